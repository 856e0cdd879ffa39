package chainrpc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// FuzzReply feeds arbitrary reply bodies through the reply framing and every
// result decoder. None may panic, and whatever a decoder accepts must be
// what was asked for.
func FuzzReply(f *testing.F) {
	chain := newTestChain()
	_, tip := chain.tip()
	f.Add([]byte(`{"result":3,"error":null,"id":1}`))
	f.Add([]byte(`{"result":null,"error":{"code":-5,"message":"Block not found"},"id":1}`))
	f.Add([]byte(`{"result":{"chain":"regtest","blocks":3,"bestblockhash":"` + tip.BlockHash().String() + `"},"error":null,"id":1}`))
	f.Add([]byte(`{"result":["` + tip.BlockHash().String() + `"],"error":null,"id":1}`))
	f.Add([]byte(`{"result":"` + blockHex(f, tip) + `","error":null,"id":1}`))
	f.Add([]byte(`{"result":"` + headerHex(f, &tip.Header) + `","error":null,"id":1}`))
	f.Add([]byte(`{"result":"` + txHex(f, tip.Transactions[2]) + `","error":null,"id":1}`))
	f.Add([]byte(`{"result":1e400,"error":null,"id":1}`))
	f.Add([]byte(`null`))

	want := tip.BlockHash()
	f.Fuzz(func(t *testing.T, body []byte) {
		raw, err := decodeReply(body, 1)
		if err != nil {
			return
		}
		if raw == nil {
			t.Fatal("no error and no result")
		}
		decodeHeight(raw)
		decodeHash(raw)
		decodeHashList(raw)
		decodeChainInfo(raw)
		if blk, err := decodeBlock(raw, want, DefaultMaxBlockBytes); err == nil && blk.BlockHash() != want {
			t.Fatalf("decodeBlock accepted block %s for %s", blk.BlockHash(), want)
		}
		if hdr, err := decodeHeader(raw, want); err == nil && hdr.BlockHash() != want {
			t.Fatalf("decodeHeader accepted header %s for %s", hdr.BlockHash(), want)
		}
		decodeTx(raw, want, DefaultMaxBlockBytes)
	})
}

// FuzzBlock feeds arbitrary bytes to the block decoder and checker, asking
// for the hash of the bytes' first 80 (so the checks past the header hash
// are reached too).
func FuzzBlock(f *testing.F) {
	chain := newTestChain()
	for _, b := range chain.blocks {
		var buf bytes.Buffer
		if err := b.Serialize(&buf); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want chainhash.Hash
		if len(data) >= wire.MaxBlockHeaderPayload {
			want = chainhash.DoubleHashH(data[:wire.MaxBlockHeaderPayload])
		}
		raw, _ := json.Marshal(hex.EncodeToString(data))
		blk, err := decodeBlock(raw, want, DefaultMaxBlockBytes)
		if err == nil && blk.BlockHash() != want {
			t.Fatalf("accepted block %s for %s", blk.BlockHash(), want)
		}
		tx, err := decodeTx(raw, chainhash.DoubleHashH(data), DefaultMaxBlockBytes)
		if err == nil && tx.TxHash() != chainhash.DoubleHashH(data) {
			t.Fatal("accepted a transaction with another txid")
		}
	})
}
