// Package console is the operator console every node serves at /ui: server-rendered pages
// (html/template, assets embedded with embed, a little plain JavaScript, no build step) over
// the cluster (members, leader, term, commit and applied index, lag), the ledger (an account's
// balances and history, a transfer), the Lightning pool, the chain (tip, wallets, deposits,
// payouts and their batches), approvals (payouts awaiting approval and cold-vault proposals,
// with approve and reject buttons), problems, and a live event feed and live cluster status
// over server-sent events. docs/CONSOLE.md describes it for operators.
//
// The console is a client of its node's own Connect API: every page is built from API calls
// made in process (inProcessTransport hands each request to the API's handler), carrying the
// logged-in operator's bearer token, so every read and every decision is authorized by the
// API's scope gate and nothing else. A read token sees the pages and is refused approvals; the
// console shows the API's refusal.
//
// It owns the browser-facing security of /ui: sessions (a random id in an HttpOnly,
// SameSite=Strict cookie; the token stays on the server, never in a cookie or a page), a CSRF
// token on every form and Origin/Sec-Fetch-Site checks on every POST, the security headers of
// every response (CSP without inline script, no framing, nosniff, no referrer, no caching), and
// bounds on request sizes, sessions and live streams.
//
// It must never read or write the state machine, apply commands or decide anything about money
// itself, and never change state except through the explicit approve and reject POSTs, which
// are API calls like any client's.
package console
