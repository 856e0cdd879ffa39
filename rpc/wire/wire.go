// Package wire names the HTTP headers of bankd's API beyond Connect's own that clients send,
// so clients (bankctl, the jepsen harness) can use them without linking the server.
package wire

// MinIndexHeader carries, on a STALE read, the highest applied index the client has already
// read (ReadMeta.applied_index of any earlier answer). The node answers only once it has
// applied that index itself, waiting up to a second, so a client that moves between replicas
// never reads an older state than one it has seen. A node still behind answers Unavailable:
// ask another node.
const MinIndexHeader = "Bankd-Min-Index"
