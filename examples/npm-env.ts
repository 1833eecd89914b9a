/**
 * What npx needs from this process's environment to reach the npm registry: a proxy, extra CA certificates,
 * a registry. A stdio server gets a safe default environment (PATH, HOME, …), not ours, so a server started
 * through npx gets these passed on explicitly. Without NODE_EXTRA_CA_CERTS behind a TLS-inspecting proxy,
 * npm fails on a self-signed certificate (or retries for minutes) the first time it fetches a package.
 */
export const npmEnvironment = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (
    const name of [
      "NODE_EXTRA_CA_CERTS",
      "HTTPS_PROXY",
      "https_proxy",
      "HTTP_PROXY",
      "http_proxy",
      "NO_PROXY",
      "no_proxy",
      "npm_config_registry"
    ]
  ) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  return env
}
