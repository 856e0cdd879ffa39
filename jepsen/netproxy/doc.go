// Package netproxy delays the TCP streams between two addresses, for tests on a machine whose
// kernel has no tc netem. A Link listens on one address and forwards every connection it
// accepts to an upstream address, adding a fixed delay (plus jitter) to the bytes flowing each
// way and, optionally, capping each direction's bandwidth. Links run in this process.
//
// The forwarding and the delays are Shopify's toxiproxy (github.com/Shopify/toxiproxy/v2) used
// as a library: each Link is a toxiproxy Proxy with a latency toxic on its upstream and its
// downstream stream and, when asked, a bandwidth toxic on each. This package only builds
// proxies and toxics from typed settings (Shape), routes toxiproxy's log into log/slog, and
// never starts toxiproxy's HTTP API.
//
// What a proxy delays and what it cannot:
//   - Bytes, not packets: toxiproxy terminates TCP on both sides, so the handshake with the
//     proxy is not delayed (the first bytes are), and TCP's own retransmissions and acks never
//     cross a Link. A request/response exchange over an established connection takes
//     Up + Down longer, which is what a round-trip time means to an application.
//   - Delays have toxiproxy's resolution of one millisecond; Shape refuses finer ones.
//   - No packet loss: a TCP stream cannot lose bytes. Loss belongs below TCP (iptables'
//     statistic match on the sender's side of a Link still works, since a Link is reached
//     over the network).
//   - TCP only. UDP (memberlist's gossip probes, for one) passes a Link by.
//
// TLS passes through a Link untouched: the client still sees and verifies the upstream's
// certificate; only the upstream sees the connection come from the proxy's address.
package netproxy
