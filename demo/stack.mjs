// The demo's running parts besides the writer: the edge worker
// (edge-worker/build) in workerd on 127.0.0.1, configured with the writer's
// public keys, and the demo app's server, whose page talks to the edge
// through the SDK. Used by demo/main.mjs and by the system suite.
import { serveApp } from "./serve.mjs";
import { startEdge } from "../tests/edge/harness.mjs";

/**
 * The edge in workerd plus the app server. The operator configures the edge
 * with the writer's public keys; here they are read from the writer itself,
 * which runs on this machine.
 */
export async function startStack({ writer, token, dataset, namespace, collection, edgePort = 0, appPort = 0, maxStalenessMs = "1000" }) {
  const keys = await (await fetch(`${writer}/v1/keys`)).json();
  const edge = await startEdge({
    port: edgePort,
    bindings: {
      WRITER_URL: writer,
      WRITER_PUBLIC_KEY: keys.writer,
      TOKEN_PUBLIC_KEY: keys.token_issuer,
      MAX_STALENESS_MS: maxStalenessMs,
    },
  });
  const edgeUrl = edge.url.toString().replace(/\/$/, "");
  const app = await serveApp({
    port: appPort,
    dataset,
    config: { edge: edgeUrl, writer, namespace, collection, token, writerKey: keys.writer },
  });
  return {
    edge: edgeUrl,
    app: app.url,
    async stop() {
      await app.close();
      await edge.dispose();
    },
  };
}
