package chainrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

func TestHonestNode(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			n := newFakeNode(t, tls)
			c := n.client(t)
			ctx := context.Background()
			height, tip := n.chain.tip()

			info, err := c.ChainInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Chain != "regtest" || info.Blocks != height || info.BestBlockHash != tip.BlockHash() {
				t.Fatalf("ChainInfo = %+v", info)
			}
			if req := n.lastRequest(); req.JSONRPC != "1.0" || len(req.Params) != 0 {
				t.Fatalf("request framing: %+v", req)
			}

			bh, bhash, err := c.BestBlock(ctx)
			if err != nil || bh != height || bhash != tip.BlockHash() {
				t.Fatalf("BestBlock = %d %s %v", bh, bhash, err)
			}
			if count, err := c.BlockCount(ctx); err != nil || count != height {
				t.Fatalf("BlockCount = %d, %v", count, err)
			}
			if best, err := c.BestBlockHash(ctx); err != nil || best != tip.BlockHash() {
				t.Fatalf("BestBlockHash = %s, %v", best, err)
			}
			if err := c.CheckNetwork(ctx, &chaincfg.RegressionNetParams); err != nil {
				t.Fatalf("CheckNetwork: %v", err)
			}

			for h, want := range n.chain.blocks {
				hash, err := c.BlockHash(ctx, int64(h))
				if err != nil || hash != want.BlockHash() {
					t.Fatalf("BlockHash(%d) = %s, %v", h, hash, err)
				}
				blk, err := c.Block(ctx, hash)
				if err != nil {
					t.Fatalf("Block(%d): %v", h, err)
				}
				if blk.BlockHash() != hash || len(blk.Transactions) != len(want.Transactions) {
					t.Fatalf("Block(%d) returned a different block", h)
				}
				if got := string(n.lastRequest().Params[1]); got != "0" {
					t.Fatalf("getblock verbosity sent as %s, want 0", got)
				}
				hdr, err := c.BlockHeader(ctx, hash)
				if err != nil || hdr.BlockHash() != hash {
					t.Fatalf("BlockHeader(%d): %v", h, err)
				}
			}

			ids, err := c.RawMempool(ctx)
			if err != nil || len(ids) != len(n.chain.mempool) {
				t.Fatalf("RawMempool = %v, %v", ids, err)
			}
			for i, id := range ids {
				if id != n.chain.mempool[i].TxHash() {
					t.Fatalf("mempool[%d] = %s", i, id)
				}
				tx, err := c.RawTransaction(ctx, id)
				if err != nil || tx.TxHash() != id {
					t.Fatalf("RawTransaction(%s): %v", id, err)
				}
			}
			// A witness transaction from a block.
			wtx := tip.Transactions[2]
			if tx, err := c.RawTransaction(ctx, wtx.TxHash()); err != nil || tx.WitnessHash() != wtx.WitnessHash() {
				t.Fatalf("RawTransaction(witness tx): %v", err)
			}

			newTx := spend(99, true)
			txid, err := c.SendRawTransaction(ctx, newTx)
			if err != nil || txid != newTx.TxHash() {
				t.Fatalf("SendRawTransaction = %s, %v", txid, err)
			}

			// Not found and out of range are told apart from a broken node.
			_, err = c.Block(ctx, sha("nope"))
			if !IsNotFound(err) || errors.Is(err, ErrBadReply) {
				t.Fatalf("Block(unknown) = %v, want a not-found RPC error", err)
			}
			_, err = c.BlockHash(ctx, height+1)
			if !IsOutOfRange(err) || IsNotFound(err) {
				t.Fatalf("BlockHash(beyond tip) = %v, want out of range", err)
			}
		})
	}
}

// caller is one client call, its result discarded.
type caller func(ctx context.Context, c *Client) error

var (
	hash1  = sha("one")
	call   = map[string]caller{}
	errAny = errors.New("any error")
)

func init() {
	call["getblockchaininfo"] = func(ctx context.Context, c *Client) error { _, err := c.ChainInfo(ctx); return err }
	call["getblockcount"] = func(ctx context.Context, c *Client) error { _, err := c.BlockCount(ctx); return err }
	call["getbestblockhash"] = func(ctx context.Context, c *Client) error { _, err := c.BestBlockHash(ctx); return err }
	call["getblockhash"] = func(ctx context.Context, c *Client) error { _, err := c.BlockHash(ctx, 1); return err }
	call["getrawmempool"] = func(ctx context.Context, c *Client) error { _, err := c.RawMempool(ctx); return err }
	call["sendrawtransaction"] = func(ctx context.Context, c *Client) error {
		_, err := c.SendRawTransaction(ctx, spend(1, false))
		return err
	}
}

func blockCall(hash chainhash.Hash) caller {
	return func(ctx context.Context, c *Client) error { _, err := c.Block(ctx, hash); return err }
}

func headerCall(hash chainhash.Hash) caller {
	return func(ctx context.Context, c *Client) error { _, err := c.BlockHeader(ctx, hash); return err }
}

func txCall(txid chainhash.Hash) caller {
	return func(ctx context.Context, c *Client) error { _, err := c.RawTransaction(ctx, txid); return err }
}

func result(v string) string { return `{"result":` + v + `,"error":null,"id":$ID}` }

func quoted(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestLyingNode(t *testing.T) {
	chain := newTestChain()
	_, tip := chain.tip()
	tipHash := tip.BlockHash()
	other := chain.blocks[1]

	// A block whose second transaction was swapped after the header was made.
	swapped := makeBlock(tipHash, 4, spend(1, false))
	swapped.Transactions[1] = spend(2, false)

	// CVE-2012-2459: [cb, a, b, b] has the merkle root of [cb, a, b].
	a, b := spend(3, false), spend(4, false)
	dupOK := makeBlock(tipHash, 4, a, b)
	dup := finishBlock(tipHash, 4, []*wire.MsgTx{dupOK.Transactions[0], a, b, b})
	dup.Header.MerkleRoot = dupOK.Header.MerkleRoot

	noCoinbase := finishBlock(tipHash, 4, []*wire.MsgTx{a, b})

	// A witness transaction whose witness was altered after the commitment.
	badWitness := makeBlock(tipHash, 4, spend(5, true))
	badWitness.Transactions[1].TxIn[0].Witness = wire.TxWitness{{0xde, 0xad}}
	// A witness block whose commitment was dropped.
	noCommitment := makeBlock(tipHash, 4, spend(6, true))
	noCommitment.Transactions[0].TxOut = noCommitment.Transactions[0].TxOut[:1]
	noCommitment.Header.MerkleRoot = finishBlock(tipHash, 4, noCommitment.Transactions).Header.MerkleRoot

	big := makeBlock(tipHash, 4)
	big.Transactions[0].TxOut[0].PkScript = make([]byte, 2000)

	mtx := chain.mempool[0]

	tests := []struct {
		name   string
		method string
		call   caller
		reply  fakeReply
		cfg    func(*Config)
		want   error  // errors.Is target, or errAny
		code   int    // when non-zero, want an *RPCError with this code
		status int    // when non-zero, want an *HTTPError with this status
		text   string // when non-empty, the error must contain it
	}{
		{name: "bad json", method: "getblockcount", reply: fakeReply{body: `{"result": 12,`}, want: ErrBadReply},
		{name: "not an object", method: "getblockcount", reply: fakeReply{body: `[1,2,3]`}, want: ErrBadReply},
		{name: "empty body", method: "getblockcount", reply: fakeReply{body: ``}, want: ErrBadReply},
		{name: "count as string", method: "getblockcount", reply: fakeReply{body: result(`"12"`)}, want: ErrBadReply},
		{name: "count as float", method: "getblockcount", reply: fakeReply{body: result(`12.5`)}, want: ErrBadReply},
		{name: "negative count", method: "getblockcount", reply: fakeReply{body: result(`-1`)}, want: ErrBadReply},
		{name: "huge count", method: "getblockcount", reply: fakeReply{body: result(`99999999999`)}, want: ErrBadReply},
		{name: "null result", method: "getblockcount", reply: fakeReply{body: result(`null`)}, want: ErrBadReply, text: "neither"},
		{name: "no id", method: "getblockcount", reply: fakeReply{body: `{"result":1,"error":null}`}, want: ErrBadReply},
		{name: "wrong id", method: "getblockcount", reply: fakeReply{body: `{"result":1,"error":null,"id":12345}`}, want: ErrBadReply, text: "does not match"},
		{name: "string id", method: "getblockcount", reply: fakeReply{body: `{"result":1,"error":null,"id":"1"}`}, want: ErrBadReply},
		{name: "short hash", method: "getbestblockhash", reply: fakeReply{body: result(`"abcd"`)}, want: ErrBadReply, text: "64 hex digits"},
		{name: "non-hex hash", method: "getbestblockhash", reply: fakeReply{body: result(quoted(strings.Repeat("zz", 32)))}, want: ErrBadReply},
		{name: "hash as number", method: "getblockhash", reply: fakeReply{body: result(`7`)}, want: ErrBadReply},
		{name: "chaininfo lacks hash", method: "getblockchaininfo", reply: fakeReply{body: result(`{"chain":"regtest","blocks":3}`)}, want: ErrBadReply},
		{name: "chaininfo blocks as string", method: "getblockchaininfo", reply: fakeReply{body: result(`{"chain":"regtest","blocks":"3","bestblockhash":` + quoted(tipHash.String()) + `}`)}, want: ErrBadReply},
		{name: "chaininfo chain as number", method: "getblockchaininfo", reply: fakeReply{body: result(`{"chain":1,"blocks":3,"bestblockhash":` + quoted(tipHash.String()) + `}`)}, want: ErrBadReply},
		{name: "mempool with number", method: "getrawmempool", reply: fakeReply{body: result(`[1]`)}, want: ErrBadReply},
		{name: "mempool as object", method: "getrawmempool", reply: fakeReply{body: result(`{}`)}, want: ErrBadReply},
		{name: "mempool duplicate", method: "getrawmempool", reply: fakeReply{body: result(`[` + quoted(hash1.String()) + `,` + quoted(hash1.String()) + `]`)}, want: ErrBadReply, text: "twice"},

		{name: "block odd hex", method: "getblock", call: blockCall(tipHash), reply: fakeReply{body: result(`"abc"`)}, want: ErrBadReply},
		{name: "block bad hex", method: "getblock", call: blockCall(tipHash), reply: fakeReply{body: result(`"zzzz"`)}, want: ErrBadReply},
		{name: "block empty", method: "getblock", call: blockCall(tipHash), reply: fakeReply{body: result(`""`)}, want: ErrBadReply},
		{name: "block as object", method: "getblock", call: blockCall(tipHash), reply: fakeReply{body: result(`{"hash":"x"}`)}, want: ErrBadReply},
		{name: "block truncated", method: "getblock", call: blockCall(tipHash), reply: fakeReply{body: result(quoted(blockHex(t, tip)[:200]))}, want: ErrBadReply, text: "does not decode"},
		{name: "block trailing bytes", method: "getblock", call: blockCall(tipHash), reply: fakeReply{body: result(quoted(blockHex(t, tip) + "00"))}, want: ErrBadReply, text: "stray"},
		{name: "block hash mismatch", method: "getblock", call: blockCall(tipHash), reply: fakeReply{body: result(quoted(blockHex(t, other)))}, want: ErrBadReply,
			text: "node returned a block that does not hash to " + tipHash.String()},
		{name: "merkle mismatch", method: "getblock", call: blockCall(swapped.BlockHash()), reply: fakeReply{body: result(quoted(blockHex(t, swapped)))}, want: ErrBadReply, text: "merkle root"},
		{name: "duplicate transactions", method: "getblock", call: blockCall(dup.BlockHash()), reply: fakeReply{body: result(quoted(blockHex(t, dup)))}, want: ErrBadReply, text: "twice"},
		{name: "no coinbase", method: "getblock", call: blockCall(noCoinbase.BlockHash()), reply: fakeReply{body: result(quoted(blockHex(t, noCoinbase)))}, want: ErrBadReply, text: "coinbase"},
		{name: "witness altered", method: "getblock", call: blockCall(badWitness.BlockHash()), reply: fakeReply{body: result(quoted(blockHex(t, badWitness)))}, want: ErrBadReply, text: "witness"},
		{name: "witness without commitment", method: "getblock", call: blockCall(noCommitment.BlockHash()), reply: fakeReply{body: result(quoted(blockHex(t, noCommitment)))}, want: ErrBadReply, text: "witness"},
		{name: "block too large", method: "getblock", call: blockCall(big.BlockHash()), reply: fakeReply{body: result(quoted(blockHex(t, big)))},
			cfg: func(c *Config) { c.MaxBlockBytes = 1000 }, want: ErrBadReply, text: "limit"},

		{name: "header too long", method: "getblockheader", call: headerCall(tipHash), reply: fakeReply{body: result(quoted(headerHex(t, &tip.Header) + "00"))}, want: ErrBadReply},
		{name: "header too short", method: "getblockheader", call: headerCall(tipHash), reply: fakeReply{body: result(quoted(headerHex(t, &tip.Header)[:158]))}, want: ErrBadReply},
		{name: "header hash mismatch", method: "getblockheader", call: headerCall(tipHash), reply: fakeReply{body: result(quoted(headerHex(t, &other.Header)))}, want: ErrBadReply,
			text: "does not hash to " + tipHash.String()},

		{name: "tx txid mismatch", method: "getrawtransaction", call: txCall(hash1), reply: fakeReply{body: result(quoted(txHex(t, mtx)))}, want: ErrBadReply, text: "txid"},
		{name: "tx trailing bytes", method: "getrawtransaction", call: txCall(mtx.TxHash()), reply: fakeReply{body: result(quoted(txHex(t, mtx) + "00"))}, want: ErrBadReply},
		{name: "tx garbage", method: "getrawtransaction", call: txCall(mtx.TxHash()), reply: fakeReply{body: result(`"00"`)}, want: ErrBadReply},
		{name: "send other txid", method: "sendrawtransaction", reply: fakeReply{body: result(quoted(hash1.String()))}, want: ErrBadReply, text: "accepted transaction"},

		{name: "reply too large", method: "getblockcount", reply: fakeReply{body: result(`1` + strings.Repeat(" ", 5000))},
			cfg: func(c *Config) { c.MaxReplyBytes = 4096 }, want: ErrReplyTooLarge},

		{name: "rpc not found", method: "getblock", call: blockCall(hash1), reply: fakeReply{body: `{"result":null,"error":{"code":-5,"message":"Block not found"},"id":$ID}`}, code: CodeNotFound},
		{name: "bitcoind error with HTTP 500", method: "getblockhash", reply: fakeReply{status: 500, body: `{"result":null,"error":{"code":-8,"message":"Block height out of range"},"id":$ID}`}, code: CodeInvalidParameter},
		{name: "bitcoind method not found with HTTP 404", method: "getblockcount", reply: fakeReply{status: 404, body: `{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":$ID}`}, code: CodeMethodNotFound},
		{name: "parse error with null id", method: "getblockcount", reply: fakeReply{body: `{"result":null,"error":{"code":-32700,"message":"Parse error"},"id":null}`}, code: -32700},
		{name: "error as string", method: "getblockcount", reply: fakeReply{body: `{"result":null,"error":"boom","id":$ID}`}, want: ErrBadReply},
		{name: "error without code", method: "getblockcount", reply: fakeReply{body: `{"result":null,"error":{"message":"boom"},"id":$ID}`}, want: ErrBadReply},
		{name: "http 401", method: "getblockcount", reply: fakeReply{status: 401}, status: 401, text: "password"},
		{name: "http 503", method: "getblockcount", reply: fakeReply{status: 503, body: "503 Too busy.  Try again later."}, status: 503, text: "Too busy"},
		{name: "http 500 not json", method: "getblockcount", reply: fakeReply{status: 500, body: "<html>oops</html>"}, status: 500},
		{name: "http 500 with result", method: "getblockcount", reply: fakeReply{status: 500, body: result(`1`)}, status: 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t, false)
			n.set(tc.method, tc.reply)
			cfg := n.config()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			do := tc.call
			if do == nil {
				do = call[tc.method]
			}
			err = do(context.Background(), c)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want) {
				t.Errorf("error %v does not wrap %v", err, tc.want)
			}
			if tc.code != 0 {
				var re *RPCError
				if !errors.As(err, &re) || re.Code != tc.code || re.Method != tc.method {
					t.Errorf("error %v is not an RPC error %d from %s", err, tc.code, tc.method)
				}
				if errors.Is(err, ErrBadReply) {
					t.Errorf("RPC error %v also claims to be a bad reply", err)
				}
			}
			if tc.status != 0 {
				var he *HTTPError
				if !errors.As(err, &he) || he.StatusCode != tc.status {
					t.Errorf("error %v is not an HTTP %d error", err, tc.status)
				}
			}
			if tc.text != "" && !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
			if !strings.Contains(err.Error(), tc.method) {
				t.Errorf("error %q does not name the method %s", err, tc.method)
			}
		})
	}
}

func TestOutOfRangeAndNotFound(t *testing.T) {
	tests := []struct {
		err                  error
		notFound, outOfRange bool
	}{
		{&RPCError{Code: -5, Message: "Block not found"}, true, false},
		{&RPCError{Code: -8, Message: "Block height out of range"}, false, true},
		{&RPCError{Code: -1, Message: "Block number out of range"}, false, true},
		{&RPCError{Code: -8, Message: "blockhash must be of length 64"}, false, false},
		{&RPCError{Code: -1, Message: "something else"}, false, false},
		{fmt.Errorf("wrapped: %w", &RPCError{Code: -5}), true, false},
		{errors.New("Block not found"), false, false},
	}
	for _, tc := range tests {
		if got := IsNotFound(tc.err); got != tc.notFound {
			t.Errorf("IsNotFound(%v) = %v", tc.err, got)
		}
		if got := IsOutOfRange(tc.err); got != tc.outOfRange {
			t.Errorf("IsOutOfRange(%v) = %v", tc.err, got)
		}
	}
}

func TestWrongCredentials(t *testing.T) {
	n := newFakeNode(t, true)
	cfg := n.config()
	cfg.Pass = "wrong"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.BlockCount(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want HTTP 401", err)
	}
}

func TestUntrustedCertificate(t *testing.T) {
	n := newFakeNode(t, true)
	cfg := n.config()
	// httptest servers share one certificate; a certificate of our own
	// making is a stranger.
	cfg.CertPEM = selfSignedPEM(t)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.BlockCount(context.Background())
	if err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "getblockcount") {
		t.Fatalf("err = %v, want a certificate error naming the method", err)
	}

	// Plain HTTP against a TLS server fails too.
	cfg = n.config()
	cfg.CertPEM = nil
	cfg.DisableTLS = true
	c, _ = New(cfg)
	if _, err := c.BlockCount(context.Background()); err == nil {
		t.Fatal("plain HTTP to a TLS server worked")
	}
}

func TestContextDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := New(Config{Host: srv.Listener.Addr().String(), DisableTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.BlockCount(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "getblockcount") {
		t.Fatalf("err = %v, want the deadline, wrapped with the method", err)
	}
}

func TestChunkedReplyTooLarge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the limit must hold while reading.
		w.Write([]byte(`{"result":"`))
		w.(http.Flusher).Flush()
		for range 100 {
			w.Write([]byte(strings.Repeat("ab", 512)))
		}
		w.Write([]byte(`","error":null,"id":1}`))
	}))
	defer srv.Close()
	c, err := New(Config{Host: srv.Listener.Addr().String(), DisableTLS: true, MaxReplyBytes: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BestBlockHash(context.Background()); !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("err = %v, want ErrReplyTooLarge", err)
	}
}

func TestCheckNetwork(t *testing.T) {
	n := newFakeNode(t, false)
	c := n.client(t)
	ctx := context.Background()

	err := c.CheckNetwork(ctx, &chaincfg.MainNetParams)
	var nm *NetworkMismatchError
	if !errors.As(err, &nm) {
		t.Fatalf("err = %v, want a network mismatch", err)
	}
	if want := "node is on network regtest"; !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not say %q", err, want)
	}
	if want := "bankd is configured for mainnet"; !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not say %q", err, want)
	}

	// bitcoind's names for mainnet and testnet3 are accepted; a wrong name
	// with the right genesis block is not.
	for _, tc := range []struct {
		chain  string
		params *chaincfg.Params
		ok     bool
	}{
		{"regtest", &chaincfg.RegressionNetParams, true},
		{"simnet", &chaincfg.RegressionNetParams, false},
		{"regtest", &chaincfg.TestNet3Params, false},
		{"regtest", &chaincfg.SigNetParams, false},
	} {
		n.set("getblockchaininfo", fakeReply{body: result(`{"chain":` + quoted(tc.chain) + `,"blocks":3,"bestblockhash":` +
			quoted(n.chain.blocks[3].BlockHash().String()) + `}`)})
		err := c.CheckNetwork(ctx, tc.params)
		if (err == nil) != tc.ok {
			t.Errorf("chain %q, params %s: err = %v", tc.chain, tc.params.Name, err)
		}
	}

	// A node that cannot answer is not a mismatch.
	n.set("getblockhash", fakeReply{status: 503, body: "busy"})
	if err := c.CheckNetwork(ctx, &chaincfg.RegressionNetParams); err == nil || errors.As(err, &nm) {
		t.Fatalf("err = %v, want the transport error", err)
	}
}

func TestChainNames(t *testing.T) {
	// The bitcoind names of the networks whose genesis blocks we know.
	for name, params := range map[string]*chaincfg.Params{
		"main": &chaincfg.MainNetParams, "test": &chaincfg.TestNet3Params, "testnet4": &chaincfg.TestNet4Params,
		"regtest": &chaincfg.RegressionNetParams, "signet": &chaincfg.SigNetParams,
	} {
		found := false
		for _, n := range chainNames(params) {
			found = found || n == name
		}
		if !found {
			t.Errorf("bitcoind's %q is not accepted for %s", name, params.Name)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Host: "http://127.0.0.1:1"},
		{Host: "127.0.0.1:1/wallet"},
		{Host: "127.0.0.1:1", CertPEM: []byte("not pem")},
		{Host: "127.0.0.1:1", DisableTLS: true, CertPEM: []byte("x")},
		{Host: "127.0.0.1:1", MaxReplyBytes: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
