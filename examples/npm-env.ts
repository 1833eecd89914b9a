/** npm's settings that say how to reach a registry (npm reads them in either case). */
const reachSettings = new Set([
  "npm_config_registry",
  "npm_config_cafile",
  "npm_config_https_proxy",
  "npm_config_proxy",
  "npm_config_noproxy",
  "npm_config_strict_ssl"
])

/**
 * What npx needs from this process's environment to reach the npm registry: a proxy, extra CA certificates,
 * npm's settings for reaching a registry. A stdio server gets a safe default environment (PATH, HOME, …),
 * not ours, so a server started through npx gets these passed on explicitly. Without NODE_EXTRA_CA_CERTS
 * behind a TLS-inspecting proxy, npm fails on a self-signed certificate (or retries for minutes) the first
 * time it fetches a package. Not npm's other settings, which `npm run` sets for its scripts (prefix,
 * cache, …) and which would change where npx installs.
 */
export const npmEnvironment = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (
    const name of [
      "NODE_EXTRA_CA_CERTS",
      "SSL_CERT_FILE",
      "HTTPS_PROXY",
      "https_proxy",
      "HTTP_PROXY",
      "http_proxy",
      "NO_PROXY",
      "no_proxy"
    ]
  ) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && reachSettings.has(name.toLowerCase())) env[name] = value
  }
  return env
}
