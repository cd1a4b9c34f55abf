// The anchor for tests/benches/throughput.rs: the JavaScript automerge-repo server, as its documentation sets one up
// (nodefs storage, the websocket server adapter), in a few lines. Usage: node server.mjs STORAGE_DIR
// Prints "listening PORT" once it accepts connections.
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { WebSocketServer } from "ws"

// automerge-repo leaves a promise unawaited when a document handle is not ready within 60 s (DocHandle's
// withTimeout), and Node exits on an unhandled rejection: under 100 devices at a time that ended the server after
// about 10,000 stored insights. Logging and carrying on keeps the anchor running, in its favour.
process.on("unhandledRejection", (reason) => console.error("unhandled rejection:", reason?.message ?? reason))

const storageDir = process.argv[2]
const socket = new WebSocketServer({ host: "127.0.0.1", port: 0 })
await new Promise((resolve) => socket.on("listening", resolve))
new Repo({
  network: [new NodeWSServerAdapter(socket)],
  storage: new NodeFSStorageAdapter(storageDir),
  peerId: `js-server-${process.pid}`,
  // A sync server: it accepts and stores what peers send, and does not push documents to peers unasked.
  sharePolicy: async () => false,
})
console.log(`listening ${socket.address().port}`)
