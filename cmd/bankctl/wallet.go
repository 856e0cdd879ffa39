package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// --- wallets ---

func parseWalletKind(s string) (bankdv1.WalletKind, error) {
	v, ok := bankdv1.WalletKind_value["WALLET_KIND_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageErrorf("-kind %q: want hot, cold or deposit", s)
	}
	return bankdv1.WalletKind(v), nil
}

func walletCreate(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "wallet id (or give it as the argument)")
	kind := fs.String("kind", "", "hot, cold or deposit (required)")
	desc := fs.String("descriptor", "", "watch-only output descriptor, e.g. 'wpkh([fp/84h/0h/0h]xpub.../<0;1>/*)' (required)")
	gap := fs.Uint("gap-limit", 0, "unused scripts watched past the last used one per branch; 0 means 20")
	birthday := fs.Uint("birthday", 0, "height of the first block that can pay the wallet")
	network := fs.String("network", "", "chain network; empty means the cluster's (cluster.hcl chain.network)")
	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return usageErrorf("want [ID], got %d arguments", len(args))
		}
		if len(args) == 1 {
			if *id != "" && *id != args[0] {
				return usageErrorf("the argument %q and -id %q name different wallets", args[0], *id)
			}
			*id = args[0]
		}
		if *id == "" {
			return usageErrorf("want the wallet id, as -id ID or the argument")
		}
		k, err := parseWalletKind(*kind)
		if err != nil {
			return err
		}
		if *gap > 1<<32-1 || *birthday > 1<<32-1 {
			return usageErrorf("-gap-limit and -birthday must fit in 32 bits")
		}
		req := &bankdv1.CreateWalletRequest{
			WalletId: *id, Kind: k, Descriptor_: *desc, Network: *network,
			GapLimit: uint32(*gap), BirthdayHeight: uint32(*birthday),
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CreateWalletResponse, error) {
			r, err := c.wallet.CreateWallet(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		if res.Replayed {
			fmt.Fprintf(a.stdout, "wallet %s already exists with this definition\n", res.Wallet.GetId())
		}
		a.printWalletDetail(res.Wallet, nil)
		return nil
	}
}

func walletList(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	limit := fs.Int("limit", 10_000, "most wallets to list (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListWalletsResponse{}
		var err error
		res.Wallets, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.Wallet, string, *bankdv1.ReadMeta, error) {
				r, err := c.wallet.ListWallets(ctx, connect.NewRequest(&bankdv1.ListWalletsRequest{
					PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Wallets, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printWallets(res.Wallets)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more wallets exist\n", *limit)
		}
		return nil
	}
}

func walletGet(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetWalletResponse, error) {
			r, err := c.wallet.GetWallet(ctx, connect.NewRequest(&bankdv1.GetWalletRequest{WalletId: args[0], Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printWalletDetail(res.Wallet, res.Meta)
		return nil
	}
}

// --- deposit addresses ---

// newRequestID makes a request id for an address request the user did not name.
func newRequestID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate a request id: %w", err)
	}
	return "ctl-" + hex.EncodeToString(b[:]), nil
}

// ensureID fills an empty idempotency key with a new one and says so on stderr (so that -o json
// output stays one document): what names it ("payout id") and the flag a retry repeats it with.
func (a *app) ensureID(id *string, what, flag string) error {
	if *id != "" {
		return nil
	}
	generated, err := newRequestID()
	if err != nil {
		return err
	}
	*id = generated
	fmt.Fprintf(a.stderr, "%s: %s (retry with -%s %s)\n", what, generated, flag, generated)
	return nil
}

func addressNew(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	account := fs.String("account", "", "the LIABILITY account the address belongs to (required)")
	wallet := fs.String("wallet", "", "DEPOSIT wallet; empty means the cluster's only one")
	requestID := fs.String("request-id", "", "idempotency key: a retry with it returns the same address (generated when empty)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if err := a.ensureID(requestID, "request id", "request-id"); err != nil {
			return err
		}
		req := &bankdv1.NewDepositAddressRequest{AccountId: *account, WalletId: *wallet, RequestId: *requestID}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.NewDepositAddressResponse, error) {
			r, err := c.wallet.NewDepositAddress(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("address request %s: %w", *requestID, err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		if res.Replayed {
			fmt.Fprintf(a.stdout, "request %s was already applied; this is its address\n", *requestID)
		}
		a.printDepositAddresses([]*bankdv1.DepositAddress{res.Address})
		return nil
	}
}

func addressList(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	account := fs.String("account", "", "account whose addresses to list (required)")
	limit := fs.Int("limit", 1000, "most addresses to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if *limit <= 0 {
			return usageErrorf("-limit must be > 0")
		}
		res := &bankdv1.ListDepositAddressesResponse{}
		var err error
		res.Addresses, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.DepositAddress, string, *bankdv1.ReadMeta, error) {
				r, err := c.wallet.ListDepositAddresses(ctx, connect.NewRequest(&bankdv1.ListDepositAddressesRequest{
					AccountId: *account, PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Addresses, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printDepositAddresses(res.Addresses)
		return nil
	}
}

func addressLookup(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ADDRESS"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.LookupAddressResponse, error) {
			r, err := c.wallet.LookupAddress(ctx, connect.NewRequest(&bankdv1.LookupAddressRequest{Address: args[0], Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		s := res.Script
		account := s.GetAccountId()
		if account == "" {
			account = "- (look-ahead)"
		}
		a.printTable([]string{"ADDRESS", "WALLET", "BRANCH", "INDEX", "ACCOUNT"},
			[][]string{{s.GetAddress(), s.GetWalletId(), branchName(s.GetBranch()), fmt.Sprint(s.GetIndex()), account}})
		return nil
	}
}
