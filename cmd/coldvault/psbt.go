package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"

	"github.com/bankd/bankd/coldvault"
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
)

// maxPSBTFileBytes bounds a PSBT file (base64).
const maxPSBTFileBytes = 8 << 20

// exportPSBT writes the PSBT of a proposal's batch, base64, for the cosigners.
func exportPSBT(ctx context.Context, c *apiclient.Clients, args []string, out string, stdout, stderr io.Writer) int {
	if len(args) != 1 || out == "" {
		fmt.Fprintln(stderr, "coldvault psbt: want -out FILE and one proposal ID")
		return exitUsage
	}
	res, err := c.Vault.Get(ctx, connect.NewRequest(&bankdv1.GetVaultProposalRequest{Id: args[0], Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
	if err != nil {
		fmt.Fprintf(stderr, "coldvault psbt: %v\n", err)
		return exitFail
	}
	b := res.Msg.GetBatch()
	if b == nil || b.GetSignaturesRequired() == 0 {
		fmt.Fprintf(stderr, "coldvault psbt: proposal %s has no transaction of the cold vault to sign (it is %s)\n", args[0], res.Msg.GetProposal().GetState())
		return exitFail
	}
	if err := os.WriteFile(out, []byte(base64.StdEncoding.EncodeToString(b.GetPsbt())+"\n"), 0o644); err != nil {
		fmt.Fprintf(stderr, "coldvault psbt: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "wrote %s: batch %s, txid %s, %d of %d signatures so far\n", out, b.GetId(), b.GetTxid(), b.GetSignatures(), b.GetSignaturesRequired())
	return exitOK
}

// submit hands the cluster one cosigner's signed PSBT of a proposal's batch.
func submit(ctx context.Context, c *apiclient.Clients, args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "coldvault submit: want a proposal ID and a PSBT file")
		return exitUsage
	}
	raw, err := readPSBT(args[1])
	if err != nil {
		fmt.Fprintf(stderr, "coldvault submit: %v\n", err)
		return exitUsage
	}
	got, err := c.Vault.Get(ctx, connect.NewRequest(&bankdv1.GetVaultProposalRequest{Id: args[0], Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
	if err != nil {
		fmt.Fprintf(stderr, "coldvault submit: %v\n", err)
		return exitFail
	}
	if got.Msg.GetProposal().GetBatchId() == "" {
		fmt.Fprintf(stderr, "coldvault submit: proposal %s has no transaction yet\n", args[0])
		return exitFail
	}
	res, err := c.Vault.SubmitSignature(ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: got.Msg.GetProposal().GetBatchId(), Psbt: raw}))
	if err != nil {
		fmt.Fprintf(stderr, "coldvault submit: %v\n", err)
		return exitFail
	}
	b := res.Msg.GetBatch()
	if b.GetState() == bankdv1.BatchState_BATCH_STATE_SIGNED {
		fmt.Fprintf(stdout, "batch %s is signed (%d of %d): the cluster broadcasts %s\n", b.GetId(), b.GetSignaturesRequired(), b.GetSignaturesRequired(), b.GetTxid())
	} else {
		fmt.Fprintf(stdout, "batch %s holds %d of %d signatures\n", b.GetId(), b.GetSignatures(), b.GetSignaturesRequired())
	}
	return exitOK
}

// sign signs a PSBT file with one cosigner's master key.
func sign(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coldvault sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "file holding the cosigner's master key (xprv or tprv)")
	in := fs.String("in", "", "the PSBT to sign (base64)")
	out := fs.String("out", "", "where to write the signed PSBT (base64)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *keyFile == "" || *in == "" || *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "coldvault sign: want -key, -in and -out")
		return exitUsage
	}
	keyText, err := os.ReadFile(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "coldvault sign: %v\n", err)
		return exitUsage
	}
	master, err := hdkeychain.NewKeyFromString(strings.TrimSpace(string(keyText)))
	if err != nil {
		fmt.Fprintf(stderr, "coldvault sign: key file: %v\n", err)
		return exitUsage
	}
	raw, err := readPSBT(*in)
	if err != nil {
		fmt.Fprintf(stderr, "coldvault sign: %v\n", err)
		return exitUsage
	}
	signed, n, err := coldvault.Sign(master, raw)
	if err != nil {
		fmt.Fprintf(stderr, "coldvault sign: %v\n", err)
		return exitFail
	}
	if err := os.WriteFile(*out, []byte(base64.StdEncoding.EncodeToString(signed)+"\n"), 0o644); err != nil {
		fmt.Fprintf(stderr, "coldvault sign: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "signed %d input(s); wrote %s\n", n, *out)
	return exitOK
}

// readPSBT reads a PSBT file: base64 (as Sparrow, Specter and Bitcoin Core write them) or
// binary.
func readPSBT(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPSBTFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPSBTFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxPSBTFileBytes)
	}
	if strings.HasPrefix(string(b), "psbt\xff") {
		return b, nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s is neither a binary nor a base64 PSBT: %w", path, err)
	}
	return raw, nil
}

// export prints the cold wallet in one of the formats its cosigners' wallets import.
func export(ctx context.Context, c *apiclient.Clients, walletID, format, name string, stdout, stderr io.Writer) int {
	res, err := c.Wallet.GetWallet(ctx, connect.NewRequest(&bankdv1.GetWalletRequest{WalletId: walletID}))
	if err != nil {
		fmt.Fprintf(stderr, "coldvault export: %v\n", err)
		return exitFail
	}
	w := res.Msg.GetWallet()
	net, ok := fsm.ChainParams(w.GetNetwork())
	if !ok {
		fmt.Fprintf(stderr, "coldvault export: wallet %s is on an unknown network %q\n", walletID, w.GetNetwork())
		return exitFail
	}
	ms, err := coldvault.ParseMultisig(w.GetDescriptor_(), net)
	if err != nil {
		fmt.Fprintf(stderr, "coldvault export: %v\n", err)
		return exitFail
	}
	switch format {
	case "descriptor":
		fmt.Fprintln(stdout, ms.Descriptor.String())
	case "coldcard":
		fmt.Fprint(stdout, ms.Coldcard(name))
	case "bsms":
		record, err := ms.BSMS()
		if err != nil {
			fmt.Fprintf(stderr, "coldvault export: %v\n", err)
			return exitFail
		}
		fmt.Fprint(stdout, record)
	default:
		fmt.Fprintf(stderr, "coldvault export: -format %q: want descriptor, coldcard or bsms\n", format)
		return exitUsage
	}
	return exitOK
}
