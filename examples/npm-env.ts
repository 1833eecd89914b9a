/**
 * The variables that say how to reach the npm registry, lowercased: a proxy, extra CA certificates, npm's
 * own registry settings. Matched in either case, as npm and the proxy conventions read them.
 */
const reachVariables = new Set([
  "node_extra_ca_certs",
  "ssl_cert_file",
  "https_proxy",
  "http_proxy",
  "no_proxy",
  "npm_config_registry",
  "npm_config_cafile",
  "npm_config_https_proxy",
  "npm_config_proxy",
  "npm_config_noproxy",
  "npm_config_strict_ssl"
])

/**
 * What npx needs from this process's environment to reach the npm registry. A stdio server gets a safe
 * default environment (PATH, HOME, …), not ours, so a server started through npx gets these passed on
 * explicitly. Without NODE_EXTRA_CA_CERTS behind a TLS-inspecting proxy, npm fails on a self-signed
 * certificate (or retries for minutes) the first time it fetches a package. Not npm's other settings, which
 * `npm run` sets for its scripts (prefix, cache, …) and which would change where npx installs.
 */
export const npmEnvironment = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && reachVariables.has(name.toLowerCase())) env[name] = value
  }
  return env
}
