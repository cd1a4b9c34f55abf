// One JavaScript automerge-repo peer, as an app built on the unmodified client would be. Driven by
// tests/it/js_client.rs; it prints one JSON line on stdout and the Rust test asserts on the server's state.
//
//   node client.mjs create URL TOKEN   creates an insight document in Grapevine's schema; prints {"url", "id"} and stays
//                                      connected until killed (the JS client never says when the server has it)
//   node client.mjs read URL TOKEN DOC reads a document by its automerge URL; prints {"doc": …} or {"unavailable": …}
import { Repo, parseAutomergeUrl } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

const [mode, serverUrl, token, docUrl] = process.argv.slice(2);
// Browsers cannot set headers on a WebSocket, so the token travels as a query parameter.
const network = new WebSocketClientAdapter(`${serverUrl}?token=${encodeURIComponent(token)}`);
const repo = new Repo({ network: [network], sharePolicy: async () => true });

function uuidOf(bytes) {
  const hex = Buffer.from(bytes).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

if (mode === "create") {
  const handle = repo.create();
  const id = uuidOf(parseAutomergeUrl(handle.url).binaryDocumentId);
  handle.change((doc) => {
    doc.schema = 1;
    doc.type = "insight";
    doc.id = id;
    doc.captured_at = "2026-11-21T18:30:00+00:00";
    doc.campaign = "community-safety";
    doc.category = "criminal-damage";
    doc.text = "Bus shelter glass smashed again";
    doc.feeling_safe = 2;
    doc.channel = "youth-worker";
    doc.location = { kind: "gps", lat: 53.01869, lon: -2.16979, accuracy_m: 8 };
  });
  console.log(JSON.stringify({ url: handle.url, id }));
  setInterval(() => {}, 1000);
} else if (mode === "read") {
  try {
    const handle = await repo.find(docUrl, { signal: AbortSignal.timeout(15000) });
    console.log(JSON.stringify({ doc: handle.doc() }));
  } catch (error) {
    console.log(JSON.stringify({ unavailable: String(error) }));
  }
  process.exit(0);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
