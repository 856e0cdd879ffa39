package rpc

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestLargeRepliesAreGzippedAtTheFastestLevel checks what a client that accepts gzip gets:
// a large reply compressed with gzip's fastest level (the header's XFL byte is 4, RFC 1952
// section 2.3.1), which any gzip reader decodes to the reply; a small reply uncompressed.
func TestLargeRepliesAreGzippedAtTheFastestLevel(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = okTransfers
	srv := startFakeServer(t, n, Options{})

	for _, tc := range []struct {
		transfers int
		gzipped   bool
	}{
		{transfers: 1, gzipped: false},
		{transfers: 500, gzipped: true},
	} {
		t.Run(fmt.Sprintf("%d transfers", tc.transfers), func(t *testing.T) {
			req := &bankdv1.CreateTransfersRequest{}
			for i := range tc.transfers {
				req.Transfers = append(req.Transfers, validTransfer(fmt.Sprintf("gz-%d-%05d", tc.transfers, i)))
			}
			body, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			hr, err := http.NewRequest(http.MethodPost, srv.url+"/bankd.v1.LedgerService/CreateTransfers", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			hr.Header.Set("Content-Type", "application/proto")
			hr.Header.Set("Accept-Encoding", "gzip") // set by hand, so net/http leaves the body as sent
			hr.Header.Set("Authorization", "Bearer "+clientToken)
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
			encoding := resp.Header.Get("Content-Encoding")
			if !tc.gzipped {
				if encoding != "" {
					t.Fatalf("a reply of %d bytes came with Content-Encoding %q, want none", len(raw), encoding)
				}
			} else {
				if encoding != "gzip" {
					t.Fatalf("Content-Encoding %q, want gzip", encoding)
				}
				if len(raw) < 10 || raw[8] != 4 {
					t.Fatalf("gzip header %x: XFL is not 4 (fastest compression)", raw[:min(len(raw), 10)])
				}
				zr, err := gzip.NewReader(bytes.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				if raw, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			got := &bankdv1.CreateTransfersResponse{}
			if err := proto.Unmarshal(raw, got); err != nil {
				t.Fatal(err)
			}
			if len(got.Results) != tc.transfers || got.Results[tc.transfers-1].Id != req.Transfers[tc.transfers-1].Id {
				t.Fatalf("%d results, want %d in request order", len(got.Results), tc.transfers)
			}
		})
	}
}

// BenchmarkReplyCompression measures what compressing a reply of 1,000 transfers costs at
// gzip's default level and at the fastest, which the server uses, and what each leaves.
func BenchmarkReplyCompression(b *testing.B) {
	resp := &bankdv1.CreateTransfersResponse{}
	for i := range 1000 {
		id := fmt.Sprintf("bench-3-%08d", i)
		resp.Results = append(resp.Results, &bankdv1.TransferResult{Id: id, Code: bankdv1.ResultCode_RESULT_CODE_OK,
			Transfer: &bankdv1.Transfer{Id: id, DebitAccountId: fmt.Sprintf("customer-%06d", i*7%10000),
				CreditAccountId: fmt.Sprintf("customer-%06d", i*13%10000), Amount: int64(i%100 + 1), Currency: "BTC",
				Index: uint64(1_000_000 + i), CreatedAtUnixMs: 1_765_000_000_000 + int64(i),
				State: bankdv1.TransferState_TRANSFER_STATE_POSTED, Owner: bankdv1.Owner_OWNER_CLIENT}})
	}
	reply, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	for _, level := range []struct {
		name string
		new  func() *gzip.Writer
	}{
		{"default", func() *gzip.Writer { return gzip.NewWriter(io.Discard) }},
		{"server", func() *gzip.Writer { return newReplyCompressor().(*gzip.Writer) }},
	} {
		b.Run(level.name, func(b *testing.B) {
			w := level.new()
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				w.Reset(&out)
				if _, err := w.Write(reply); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(reply)), "reply-bytes")
			b.ReportMetric(float64(out.Len()), "compressed-bytes")
		})
	}
}
