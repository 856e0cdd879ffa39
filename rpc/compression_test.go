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
