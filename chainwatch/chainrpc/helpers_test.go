package chainrpc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// coinbase returns a coinbase transaction; height makes it unique.
func coinbase(height int64, witness bool) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	in := wire.NewTxIn(&wire.OutPoint{Index: wire.MaxPrevOutIndex}, []byte{byte(height), byte(height >> 8), 0x51}, nil)
	if witness {
		in.Witness = wire.TxWitness{make([]byte, 32)} // the witness nonce
	}
	tx.AddTxIn(in)
	tx.AddTxOut(wire.NewTxOut(50_0000_0000, []byte{0x51}))
	return tx
}

// spend returns a transaction spending an arbitrary outpoint; seed makes it
// unique. With witness, the input carries a witness.
func spend(seed byte, witness bool) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	in := wire.NewTxIn(&wire.OutPoint{Hash: chainhash.Hash{seed, 1}, Index: uint32(seed)}, nil, nil)
	if witness {
		in.Witness = wire.TxWitness{{seed, 2, 3}, {4, 5}}
	} else {
		in.SignatureScript = []byte{0x01, seed}
	}
	tx.AddTxIn(in)
	tx.AddTxOut(wire.NewTxOut(int64(seed)*1000, []byte{0x00, 0x14, seed, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}))
	return tx
}

// makeBlock returns a block on top of prev with the given transactions after
// a coinbase, with a correct merkle root, and, when any transaction has a
// witness, a correct witness commitment.
func makeBlock(prev chainhash.Hash, height int64, txs ...*wire.MsgTx) *wire.MsgBlock {
	witness := false
	for _, tx := range txs {
		if tx.HasWitness() {
			witness = true
		}
	}
	cb := coinbase(height, witness)
	all := append([]*wire.MsgTx{cb}, txs...)
	if witness {
		utxs := make([]*btcutil.Tx, len(all))
		for i, tx := range all {
			utxs[i] = btcutil.NewTx(tx)
		}
		root := blockchain.CalcMerkleRoot(utxs, true)
		commitment := chainhash.DoubleHashB(append(root[:], cb.TxIn[0].Witness[0]...))
		script := append(append([]byte{}, blockchain.WitnessMagicBytes...), commitment...)
		cb.AddTxOut(wire.NewTxOut(0, script))
	}
	return finishBlock(prev, height, all)
}

// finishBlock builds a block with exactly the given transactions and a
// merkle root computed over them.
func finishBlock(prev chainhash.Hash, height int64, txs []*wire.MsgTx) *wire.MsgBlock {
	utxs := make([]*btcutil.Tx, len(txs))
	for i, tx := range txs {
		utxs[i] = btcutil.NewTx(tx)
	}
	blk := &wire.MsgBlock{Header: wire.BlockHeader{
		Version:    4,
		PrevBlock:  prev,
		MerkleRoot: blockchain.CalcMerkleRoot(utxs, false),
		Timestamp:  time.Unix(1_700_000_000+height*600, 0),
		Bits:       0x207fffff,
		Nonce:      uint32(height),
	}}
	blk.Transactions = txs
	return blk
}

func blockHex(t testing.TB, blk *wire.MsgBlock) string {
	t.Helper()
	var buf bytes.Buffer
	if err := blk.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf.Bytes())
}

func headerHex(t testing.TB, hdr *wire.BlockHeader) string {
	t.Helper()
	var buf bytes.Buffer
	if err := hdr.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf.Bytes())
}

func txHex(t testing.TB, tx *wire.MsgTx) string {
	t.Helper()
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf.Bytes())
}

// testChain is a small regtest chain: the real regtest genesis block followed
// by a few blocks, the last of which holds a witness transaction.
type testChain struct {
	blocks  []*wire.MsgBlock
	mempool []*wire.MsgTx
}

func newTestChain() *testChain {
	c := &testChain{blocks: []*wire.MsgBlock{chaincfg.RegressionNetParams.GenesisBlock}}
	for h := int64(1); h <= 3; h++ {
		var txs []*wire.MsgTx
		if h == 3 {
			txs = append(txs, spend(7, false), spend(8, true))
		}
		c.blocks = append(c.blocks, makeBlock(c.blocks[h-1].BlockHash(), h, txs...))
	}
	c.mempool = []*wire.MsgTx{spend(20, true), spend(21, false)}
	return c
}

func (c *testChain) tip() (int64, *wire.MsgBlock) {
	return int64(len(c.blocks) - 1), c.blocks[len(c.blocks)-1]
}

// rpcRequest is a request as the fake node sees it.
type rpcRequest struct {
	JSONRPC string            `json:"jsonrpc"`
	ID      json.RawMessage   `json:"id"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params"`
}

// fakeNode is an httptest server speaking enough of btcd's RPC. By default it
// answers truthfully from its chain; override replaces the reply to a method
// with a raw body (and status), to make it lie.
type fakeNode struct {
	t     testing.TB
	srv   *httptest.Server
	chain *testChain
	user  string
	pass  string

	mu       sync.Mutex
	override map[string]fakeReply
	requests []rpcRequest
}

type fakeReply struct {
	status int    // 0 means 200
	body   string // the whole body; "$ID" is replaced by the request id
}

func newFakeNode(t testing.TB, tls bool) *fakeNode {
	n := &fakeNode{t: t, chain: newTestChain(), user: "u", pass: "p", override: map[string]fakeReply{}}
	if tls {
		n.srv = httptest.NewTLSServer(http.HandlerFunc(n.serve))
	} else {
		n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	}
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) config() Config {
	cfg := Config{Host: n.srv.Listener.Addr().String(), User: n.user, Pass: n.pass}
	if n.srv.TLS == nil {
		cfg.DisableTLS = true
	} else {
		cfg.CertPEM = certPEM(n.srv)
	}
	return cfg
}

func (n *fakeNode) client(t testing.TB) *Client {
	t.Helper()
	c, err := New(n.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (n *fakeNode) set(method string, r fakeReply) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.override[method] = r
}

func (n *fakeNode) lastRequest() rpcRequest {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.requests[len(n.requests)-1]
}

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != n.user || pass != n.pass {
		http.Error(w, "401 Unauthorized.", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req rpcRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	n.requests = append(n.requests, req)
	over, lie := n.override[req.Method]
	n.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if lie {
		if over.status != 0 {
			w.WriteHeader(over.status)
		}
		w.Write(bytes.ReplaceAll([]byte(over.body), []byte("$ID"), req.ID))
		return
	}
	n.mu.Lock()
	result, rpcErr := n.answer(req)
	n.mu.Unlock()
	reply := map[string]any{"result": result, "error": rpcErr, "id": req.ID}
	if err := json.NewEncoder(w).Encode(reply); err != nil {
		n.t.Errorf("fake node: %v", err)
	}
}

// answer answers req truthfully, the way btcd does.
func (n *fakeNode) answer(req rpcRequest) (any, any) {
	notFound := map[string]any{"code": -5, "message": "Block not found"}
	hashParam := func() (chainhash.Hash, bool) {
		if len(req.Params) < 1 {
			return chainhash.Hash{}, false
		}
		var s string
		if json.Unmarshal(req.Params[0], &s) != nil {
			return chainhash.Hash{}, false
		}
		h, err := chainhash.NewHashFromStr(s)
		return *h, err == nil
	}
	findBlock := func() *wire.MsgBlock {
		h, ok := hashParam()
		if !ok {
			return nil
		}
		for _, b := range n.chain.blocks {
			if b.BlockHash() == h {
				return b
			}
		}
		return nil
	}
	height, tip := n.chain.tip()
	switch req.Method {
	case "getblockchaininfo":
		return map[string]any{"chain": "regtest", "blocks": height, "headers": height,
			"bestblockhash": tip.BlockHash().String(), "difficulty": 4.6e-10}, nil
	case "getblockcount":
		return height, nil
	case "getbestblockhash":
		return tip.BlockHash().String(), nil
	case "getblockhash":
		var h int64
		if len(req.Params) != 1 || json.Unmarshal(req.Params[0], &h) != nil {
			return nil, map[string]any{"code": -1, "message": "bad params"}
		}
		if h < 0 || h > height {
			return nil, map[string]any{"code": -1, "message": "Block number out of range"}
		}
		return n.chain.blocks[h].BlockHash().String(), nil
	case "getblock":
		var verbosity int
		if len(req.Params) != 2 || json.Unmarshal(req.Params[1], &verbosity) != nil || verbosity != 0 {
			// btcd: "parameter #2 'verbosity' must be type int (got bool)"
			return nil, map[string]any{"code": -1, "message": "bad verbosity " + string(req.Params[1])}
		}
		if b := findBlock(); b != nil {
			return blockHex(n.t, b), nil
		}
		return nil, notFound
	case "getblockheader":
		if len(req.Params) != 2 || string(req.Params[1]) != "false" {
			return nil, map[string]any{"code": -1, "message": "bad verbose"}
		}
		if b := findBlock(); b != nil {
			return headerHex(n.t, &b.Header), nil
		}
		return nil, notFound
	case "getrawmempool":
		ids := []string{}
		for _, tx := range n.chain.mempool {
			ids = append(ids, tx.TxHash().String())
		}
		return ids, nil
	case "getrawtransaction":
		h, ok := hashParam()
		if ok && len(req.Params) == 2 && string(req.Params[1]) == "0" {
			for _, b := range append([]*wire.MsgBlock{{Transactions: n.chain.mempool}}, n.chain.blocks...) {
				for _, tx := range b.Transactions {
					if tx.TxHash() == h {
						return txHex(n.t, tx), nil
					}
				}
			}
		}
		return nil, map[string]any{"code": -5, "message": "No information available about transaction"}
	case "sendrawtransaction":
		var s string
		if len(req.Params) != 1 || json.Unmarshal(req.Params[0], &s) != nil {
			return nil, map[string]any{"code": -1, "message": "bad params"}
		}
		raw, err := hex.DecodeString(s)
		if err != nil {
			return nil, map[string]any{"code": -22, "message": "TX decode failed"}
		}
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(raw)); err != nil {
			return nil, map[string]any{"code": -22, "message": "TX decode failed"}
		}
		n.chain.mempool = append(n.chain.mempool, &tx)
		return tx.TxHash().String(), nil
	}
	return nil, map[string]any{"code": -32601, "message": "Method not found"}
}

// certPEM returns the PEM encoding of a TLS test server's certificate.
func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// selfSignedPEM returns a self-signed certificate for 127.0.0.1 that no test
// server uses.
func selfSignedPEM(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "stranger"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// sha is a short helper for distinct fake hashes.
func sha(s string) chainhash.Hash {
	return chainhash.Hash(sha256.Sum256([]byte(s)))
}
