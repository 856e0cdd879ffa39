package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Bounds of the commands that page or stream.
const (
	listPageSize      = 1000
	maxListAccounts   = 1_000_000
	historyPageSize   = 1000
	watchMaxBackoff   = 5 * time.Second
	watchFirstBackoff = 200 * time.Millisecond
)

// command is one bankctl command: its words, arguments and what it does.
type command struct {
	path    string // "accounts create"
	args    string // "ID -currency BTC -kind liability ..."
	summary string
	// setup registers the command's flags and returns the action to run with the positional
	// arguments.
	setup func(a *app, fs *flag.FlagSet) func(ctx context.Context, args []string) error
	// ownTimeout: the command uses -timeout for itself.
	ownTimeout bool
}

func commands() []command {
	return []command{
		{path: "accounts create", args: "ID -currency BTC -kind asset|liability|equity|income|expense [-non-negative] [-daily-debit-limit N] [-meta k=v]...", summary: "create an account", setup: accountsCreate},
		{path: "accounts import", args: "FILE [-batch 8000]", summary: "create the accounts in FILE (a JSON array, or JSON lines, of accounts in the API's JSON form), up to 8,000 per request; nothing is sent unless every account is valid and no id repeats; prints how many were created, replayed and refused (with reasons), exits 1 if any was refused", setup: accountsImport},
		{path: "accounts list", args: "[-limit N]", summary: "list accounts with their balances", setup: accountsList},
		{path: "accounts get", args: "ID", summary: "show an account", setup: accountsGet},
		{path: "balance", args: "ID", summary: "show an account's balance", setup: balance},
		{path: "accounts balance", args: "ID", summary: "same as balance", setup: balance},
		{path: "transfer", args: "-from A -to B -amount N [-id ID] [-currency BTC] [-code N] [-ref R] [-meta k=v]... [-pending [-timeout 30s]] [-fence-lock L -fence-token T]", summary: "move money (a random id is generated and printed when -id is missing)", setup: transferCmd, ownTimeout: true},
		{path: "transfer get", args: "ID", summary: "show a transfer", setup: transferGet},
		{path: "pending post", args: "PENDING_ID [-id ID] [-amount N]", summary: "post (part of) a pending transfer", setup: pendingResolve(true)},
		{path: "pending void", args: "PENDING_ID [-id ID]", summary: "void a pending transfer", setup: pendingResolve(false)},
		{path: "history", args: "ACCOUNT [-limit N]", summary: "list an account's history, oldest first", setup: history},
		{path: "lock acquire", args: "NAME -holder H -ttl 10s", summary: "acquire a lease; prints its fencing token", setup: lockAcquire},
		{path: "lock renew", args: "NAME -holder H -token T [-ttl 10s]", summary: "renew a lease", setup: lockRenew},
		{path: "lock release", args: "NAME -holder H -token T", summary: "release a lease", setup: lockRelease},
		{path: "lock get", args: "NAME", summary: "show who holds a lock", setup: lockGet},
		{path: "wallet create", args: "[ID | -id ID] -kind hot|cold|deposit -descriptor D [-gap-limit N] [-birthday HEIGHT] [-network N]", summary: "create a watch-only wallet from an output descriptor; admin", setup: walletCreate},
		{path: "wallet list", args: "[-limit N]", summary: "list wallets with their branches' next and watched indexes", setup: walletList},
		{path: "wallet get", args: "ID", summary: "show a wallet", setup: walletGet},
		{path: "address new", args: "-account A [-wallet W] [-request-id R]", summary: "hand out a deposit address to an account (a random request id is generated and printed when missing)", setup: addressNew},
		{path: "address list", args: "-account A [-limit N]", summary: "list an account's deposit addresses, oldest first", setup: addressList},
		{path: "address lookup", args: "ADDRESS", summary: "tell which wallet, index and account an address is", setup: addressLookup},
		{path: "chain status", args: "", summary: "the followed chain's tip, tracked transactions and UTXO totals", setup: chainStatus},
		{path: "chain tx", args: "TXID", summary: "a tracked transaction's lifecycle state and the deposits it pays", setup: chainTx},
		{path: "chain utxos", args: "[-wallet W] [-limit N]", summary: "our wallets' unspent outputs", setup: chainUtxos},
		{path: "chain deposits", args: "-account A [-limit N]", summary: "an account's deposits, first seen first", setup: chainDeposits},
		{path: "chain rescan", args: "-from HEIGHT", summary: "match the blocks from HEIGHT to the tip again (wallets created after they were followed); admin", setup: chainRescan},
		{path: "lnd nodes", args: "", summary: "the lnd pool: each node's state, health and unresolved invoices and payments", setup: lndNodes},
		{path: "lnd add", args: "ID -address HOST:PORT -tls-cert FILE -macaroon FILE", summary: "add an lnd node to the pool, or change how it is reached (the files must be at these absolute paths on every bankd node); admin", setup: lndAdd},
		{path: "lnd drain", args: "ID [-undo] [-wait]", summary: "give a node no new work, -undo to make it active again; -wait polls until it retires, within -timeout; admin", setup: lndDrain},
		{path: "lnd open-channel", args: "NODE PEER SATS [-private] [-id ID] [-wait]", summary: "open a channel from pool node NODE to PEER (pubkey[@host:port]) funded from the hot wallet through lnd's PSBT flow; booked hot -> ln:NODE when final; -wait polls until lnd published the funding (a random id is generated and printed when -id is missing); operator", setup: lndOpenChannel},
		{path: "lnd channel-open", args: "ID", summary: "show a channel open: its step in the PSBT flow and its funding transaction", setup: lndChannelOpen},
		{path: "lnd cancel-open", args: "ID -reason R", summary: "give up a channel open whose funding lnd has not published; its coins are released; operator", setup: lndCancelOpen},
		{path: "vault propose", args: "to-cold|to-hot COLD_WALLET SATS -reason R [-id ID]", summary: "propose a move between the hot wallet and a cold vault (coldvault does this by itself; another identity approves); operator", setup: vaultPropose},
		{path: "vault list", args: "[-state proposed|approved|signing|broadcast|confirmed|final|rejected|abandoned] [-limit N]", summary: "list moves between the hot wallet and the cold vault, oldest first", setup: vaultList},
		{path: "vault get", args: "ID", summary: "show a vault move with its transaction and PSBT", setup: vaultGet},
		{path: "vault approve", args: "ID", summary: "approve a vault move proposed by another identity; operator", setup: vaultDecide(true)},
		{path: "vault reject", args: "ID -reason R", summary: "reject a vault move proposed by another identity; operator", setup: vaultDecide(false)},
		{path: "vault sign-import", args: "ID FILE", summary: "hand the cluster a cosigner's signed PSBT (base64 or binary) of a move out of the cold vault; at M signatures it is broadcast; operator", setup: vaultSignImport},
		{path: "vault abandon", args: "ID -reason R", summary: "give up a vault move whose transaction is not signed; operator", setup: vaultAbandon},
		{path: "lnd reconcile", args: "", summary: "compare each node's ledger account with what lnd holds; exits 1 on any difference or error; admin", setup: lndReconcile},
		{path: "lnd declare-lost", args: "NODE -reason R", summary: "declare a pool node gone for good (it must have stopped answering): the pool never calls it again, its open invoices are canceled in the ledger, its payments in flight wait for lnd resolve; it retires once none is left (docs/LOST_NODES.md); admin", setup: lndDeclareLost},
		{path: "lnd unresolved", args: "NODE [-limit N]", summary: "exactly what is still open on a node: its open invoices and its payments in flight", setup: lndUnresolved},
		{path: "lnd resolve", args: "PAYMENT -preimage HEX [-fee-sat N] | -failed -evidence force-close|payee -ref REF", summary: "resolve a payment in flight on a lost node from evidence: the preimage proves it succeeded, a force-close resolution or the payee's word that it failed; final, recorded with who decided; admin", setup: lndResolve},
		{path: "adjustments book", args: "ACCOUNT -kind channel-opened-by-hand|channel-closed-by-hand|routing-fees|close-fees|fee-rounding|other -amount SATS -reason R -ref REF [-id ID]", summary: "book money that moved outside bankd into a pool node's ln:NODE or a wallet's wallet:ID account (SATS > 0: it holds more than its books, < 0: less), against the kind's counter-account, so that reconciliation returns to zero (a random id is generated and printed when -id is missing); operator", setup: adjustmentsBook},
		{path: "adjustments get", args: "ID", summary: "show an adjustment: who booked it, when, why and its transfer", setup: adjustmentsGet},
		{path: "adjustments list", args: "[-account A] [-limit N]", summary: "list adjustments, oldest first", setup: adjustmentsList},
		{path: "invoice create", args: "ACCOUNT SATS [-memo M] [-expiry 1h] [-request-id ID]", summary: "issue a BOLT11 invoice that credits ACCOUNT when paid (a random request id is generated and printed when missing)", setup: invoiceCreate},
		{path: "invoice get", args: "HASH", summary: "show an invoice by its payment hash", setup: invoiceGet},
		{path: "pay", args: "ACCOUNT BOLT11 [-amount SATS] [-max-fee SATS] [-wait 30s] [-id ID]", summary: "pay a BOLT11 invoice from ACCOUNT; exits 1 if it fails (a random id is generated and printed when -id is missing)", setup: payCmd},
		{path: "payment get", args: "ID", summary: "show a payment", setup: paymentGet},
		{path: "pay-internal", args: "FROM TO SATS [-memo M] [-id ID]", summary: "move SATS between two of the bank's accounts in one ledger transfer (a random id is generated and printed when -id is missing)", setup: payInternal},
		{path: "payout request", args: "ACCOUNT ADDRESS SATS [-queue Q] [-id ID]", summary: "withdraw SATS on-chain from ACCOUNT; amount and fee are held until the transaction is final (a random id is generated and printed when -id is missing)", setup: payoutRequest},
		{path: "payout get", args: "ID", summary: "show a withdrawal and the state, txid and fee of the transaction it is in", setup: payoutGet},
		{path: "payout list", args: "[-account A] [-state queued|awaiting_approval|batched|paid|cancelled|rejected|failed] [-limit N]", summary: "list withdrawals, oldest first", setup: payoutList},
		{path: "payout cancel", args: "ID", summary: "cancel a withdrawal that is not yet in a transaction; its hold is voided", setup: payoutCancel},
		{path: "payout approve", args: "ID", summary: "approve a withdrawal awaiting approval; operator, not the token that requested it", setup: payoutDecide(true)},
		{path: "payout reject", args: "ID -reason R", summary: "reject a withdrawal awaiting approval, voiding its hold; operator, not the token that requested it", setup: payoutDecide(false)},
		{path: "payout batches", args: "[-state planned|signed|confirmed|final|abandoned] [-limit N]", summary: "list payout transactions, oldest first", setup: payoutBatches},
		{path: "payout batch", args: "ID", summary: "show a payout transaction: inputs, outputs, fee, signer", setup: payoutBatch},
		{path: "payout psbt", args: "ID [-out FILE]", summary: "export a batch's unsigned PSBT as base64 for a manual signer, to stdout or a new file (mode 0600); -o does not apply", setup: payoutPSBT},
		{path: "payout sign-import", args: "ID FILE", summary: "submit a PSBT signed elsewhere (base64 or binary) for a planned batch; signer", setup: payoutSignImport},
		{path: "payout flush", args: "[QUEUE]", summary: "plan the queue's next transaction now, whatever its trigger (how a manual queue is planned); operator", setup: payoutFlush},
		{path: "payout reconcile", args: "", summary: "the bank's wallets against their books, and customer liabilities against assets; exits 1 on a settled difference; operator", setup: payoutReconcile},
		{path: "payout abandon", args: "ID -reason R", summary: "give up a batch that is not yet signed: its inputs are released and its withdrawals queued again; operator", setup: payoutAbandon},
		{path: "watch", args: "[-from N] [-count N]", summary: "stream events; reconnects and resumes after a disconnect", setup: watch},
		{path: "cluster status", summary: "the answering node's view of Raft", setup: clusterStatus},
		{path: "cluster members", summary: "every node, with suffrage and gossip state", setup: clusterMembers},
		{path: "cluster upgrade-status", summary: "each node's binary version and command types, and which types the cluster may use yet", setup: clusterUpgradeStatus},
		{path: "cluster leader", summary: "the current leader", setup: clusterLeader},
		{path: "cluster transfer-leader", args: "[NODE]", summary: "hand leadership to NODE (or the best follower); admin", setup: clusterTransferLeader},
		{path: "cluster remove", args: "NODE", summary: "remove a node from the Raft configuration; admin", setup: clusterRemove},
		{path: "cluster snapshot save", args: "FILE", summary: "save a consistent snapshot of the state (applied index, state hash, checksum) to a new file (mode 0600); admin; the stream may take -timeout or 1h, whichever is longer", setup: clusterSnapshotSave},
		{path: "cluster snapshot inspect", args: "FILE", summary: "check a saved snapshot whole and print what it holds", setup: clusterSnapshotInspect},
		{path: "cluster snapshot restore", args: "FILE [-force]", summary: "replace the state of a new cluster with a saved snapshot; admin; -timeout or 1h, whichever is longer", setup: clusterSnapshotRestore},
		{path: "cluster compact", args: "[-history D] [-keep-indexes N] [-idempotency-window D]", summary: "drop old events, history and finished client transfers now, as the retention block would; admin", setup: clusterCompact},
		{path: "problems", args: "[-limit N]", summary: "what the chain and Lightning drivers met and could not apply as expected (credits refused, ids taken), oldest first; admin", setup: problems},
		{path: "cluster hash", summary: "state hash of every node in -addr (replicas at one index must match)", setup: clusterHash},
	}
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, `bankctl talks to a bankd cluster.

Usage: bankctl [flags] COMMAND [args] [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s %s\n      %s\n", c.path, c.args, c.summary)
	}
	fmt.Fprintf(w, `  help
      this text

Flags (before or after the command):
  -addr URL[,URL...]  API of one or more nodes; the next is tried when one is unavailable
                      (env %s, default %s)
  -token T            bearer token (env %s, default %s)
  -o table|json       output format; json prints protojson (one object per line for watch)
  -stale              reads answer from the node asked, without the leader (may lag)
  -region R           with -stale, ask the nodes of region R first: the nodes in -addr and
                      those the cluster lists in R (env %s)
  -min-index N        with -stale, answer only from a node that has applied index N (the
                      applied index of an earlier answer), so reads never go back in time
  -timeout D          deadline of each call (default %s); for transfer it is the pending
                      timeout, so give the call deadline before the command; pay adds its
                      -wait to it; lnd drain -wait stops waiting after it

Errors print "bankctl: <code>: <message>" and exit 1.
`, envAddr, defaultAddr, envToken, defaultToken, envRegion, defaultTimeout)
}

// dispatch finds the command named by the leading words of args and runs it.
func (a *app) dispatch(ctx context.Context, args []string) error {
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(a.stdout)
		return nil
	}
	var best *command
	bestWords := 0
	for _, c := range commands() {
		words := strings.Fields(c.path)
		if len(words) <= len(args) && len(words) > bestWords && equalWords(words, args[:len(words)]) {
			best, bestWords = &c, len(words)
		}
	}
	if best == nil {
		return usageErrorf("unknown command %q (see bankctl help)", strings.Join(args[:min(2, len(args))], " "))
	}
	fs := flag.NewFlagSet("bankctl "+best.path, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	a.opts.register(fs, !best.ownTimeout)
	action := best.setup(a, fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bankctl %s %s\n", best.path, best.args)
		fs.PrintDefaults()
	}
	positional, err := parseInterspersed(fs, args[bestWords:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%s: %v", best.path, err)
	}
	if err := a.prepare(); err != nil {
		return err
	}
	return action(ctx, positional)
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// parseInterspersed parses flags that may come before, between or after positional
// arguments ("accounts create alice -currency BTC"). Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// fs.Parse stops at "--" (consuming it) or at the first non-flag.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func wantArgs(args []string, n int, names string) error {
	if len(args) != n {
		return usageErrorf("want %s, got %d argument(s)", names, len(args))
	}
	return nil
}

func (a *app) consistency() bankdv1.ReadConsistency {
	if a.opts.stale {
		return bankdv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	return bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
}

// metaFlag collects repeated -meta k=v.
type metaFlag map[string]string

func (m metaFlag) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[k] = v
	return nil
}

func parseKind(s string) (bankdv1.AccountKind, error) {
	v, ok := bankdv1.AccountKind_value["ACCOUNT_KIND_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageErrorf("-kind %q: want asset, liability, equity, income or expense", s)
	}
	return bankdv1.AccountKind(v), nil
}

// --- accounts ---

func accountsCreate(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	currency := fs.String("currency", "BTC", "currency code (3-8 upper-case letters)")
	kind := fs.String("kind", "", "asset, liability, equity, income or expense (required)")
	nonNegative := fs.Bool("non-negative", false, "the balance may never go below zero, pending included")
	limit := fs.Int64("daily-debit-limit", 0, "largest total of debits per UTC day; 0 means none")
	meta := metaFlag{}
	fs.Var(meta, "meta", "metadata key=value (repeatable)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		k, err := parseKind(*kind)
		if err != nil {
			return err
		}
		acc := &bankdv1.Account{Id: args[0], Currency: *currency, Kind: k, NonNegative: *nonNegative, DailyDebitLimit: *limit}
		if len(meta) > 0 {
			acc.Metadata = meta
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CreateAccountResponse, error) {
			r, err := c.ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: acc}))
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
			fmt.Fprintf(a.stdout, "account %s already exists with this definition\n", res.Account.GetId())
		}
		a.printAccounts([]*bankdv1.Account{res.Account})
		return nil
	}
}

func accountsList(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	limit := fs.Int("limit", 10_000, "most accounts to list (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListAccountsResponse{}
		var err error
		res.Accounts, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.Account, string, *bankdv1.ReadMeta, error) {
				r, err := c.ledger.ListAccounts(ctx, connect.NewRequest(&bankdv1.ListAccountsRequest{
					PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Accounts, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printAccounts(res.Accounts)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more accounts exist\n", *limit)
		}
		return nil
	}
}

func (a *app) getAccount(ctx context.Context, id string) (*bankdv1.GetAccountResponse, error) {
	return call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetAccountResponse, error) {
		r, err := c.ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: id, Consistency: a.consistency()}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	})
}

func accountsGet(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := a.getAccount(ctx, args[0])
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printAccountDetail(res.Account, res.Meta)
		return nil
	}
}

func balance(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := a.getAccount(ctx, args[0])
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res.Account.GetBalance())
		}
		a.printBalance(res.Account)
		return nil
	}
}

// --- transfers ---

// newTransferID makes an id for a transfer the user did not name.
func newTransferID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate a transfer id: %w", err)
	}
	return "ctl-" + hex.EncodeToString(b[:]), nil
}

func transferCmd(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "transfer id, the idempotency key (generated when empty)")
	from := fs.String("from", "", "account to debit")
	to := fs.String("to", "", "account to credit")
	amount := fs.Int64("amount", 0, "amount in the smallest unit (satoshi)")
	currency := fs.String("currency", "BTC", "currency of both accounts")
	code := fs.Uint("code", 0, "application reason code")
	ref := fs.String("ref", "", "external reference: payment hash, txid:vout, order id")
	pending := fs.Bool("pending", false, "two-phase: reserve the amount until posted or voided")
	timeout := fs.Duration("timeout", 0, "with -pending: void automatically after this long (0: never)")
	fenceLock := fs.String("fence-lock", "", "only apply while this lock is held under -fence-token")
	fenceToken := fs.Uint64("fence-token", 0, "fencing token of -fence-lock")
	meta := metaFlag{}
	fs.Var(meta, "meta", "metadata key=value (repeatable)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if *timeout != 0 && !*pending {
			return usageErrorf("-timeout is the pending timeout: it needs -pending (give the call deadline before the command)")
		}
		if *code > 1<<32-1 {
			return usageErrorf("-code must fit in 32 bits")
		}
		t := &bankdv1.Transfer{
			Id: *id, DebitAccountId: *from, CreditAccountId: *to, Amount: *amount, Currency: *currency,
			Code: uint32(*code), ExternalRef: *ref, Pending: *pending, TimeoutMs: timeout.Milliseconds(),
		}
		if len(meta) > 0 {
			t.Metadata = meta
		}
		var fence *bankdv1.Fence
		if *fenceLock != "" || *fenceToken != 0 {
			fence = &bankdv1.Fence{LockName: *fenceLock, Token: *fenceToken}
		}
		return a.createTransfer(ctx, t, fence)
	}
}

// createTransfer sends t, naming it first when it has no id, and prints the result.
func (a *app) createTransfer(ctx context.Context, t *bankdv1.Transfer, fence *bankdv1.Fence) error {
	if t.Id == "" {
		id, err := newTransferID()
		if err != nil {
			return err
		}
		t.Id = id
		// On stderr so that -o json output stays one document; the id is what a retry needs.
		fmt.Fprintf(a.stderr, "transfer id: %s (retry with -id %s)\n", id, id)
	}
	res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CreateTransferResponse, error) {
		r, err := c.ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: t, Fence: fence}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	})
	if err != nil {
		return fmt.Errorf("transfer %s: %w", t.Id, err)
	}
	if a.json() {
		return a.printJSON(res)
	}
	if res.Replayed {
		fmt.Fprintf(a.stdout, "transfer %s was already applied; this is its first result\n", t.Id)
	}
	a.printTransfers([]*bankdv1.Transfer{res.Transfer})
	return nil
}

func transferGet(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetTransferResponse, error) {
			r, err := c.ledger.GetTransfer(ctx, connect.NewRequest(&bankdv1.GetTransferRequest{Id: args[0], Consistency: a.consistency()}))
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
		a.printTransfers([]*bankdv1.Transfer{res.Transfer})
		return nil
	}
}

func pendingResolve(post bool) func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
		id := fs.String("id", "", "id of the post or void transfer, the idempotency key (generated when empty)")
		var amount *int64
		if post {
			amount = fs.Int64("amount", 0, "amount to post; 0 posts the full pending amount")
		}
		return func(ctx context.Context, args []string) error {
			if err := wantArgs(args, 1, "PENDING_ID"); err != nil {
				return err
			}
			t := &bankdv1.Transfer{Id: *id, PendingId: args[0], PostPending: post, VoidPending: !post}
			if post {
				t.Amount = *amount
			}
			return a.createTransfer(ctx, t, nil)
		}
	}
}

func history(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	limit := fs.Int("limit", 100, "most entries to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ACCOUNT"); err != nil {
			return err
		}
		if *limit <= 0 {
			return usageErrorf("-limit must be > 0")
		}
		res := &bankdv1.ListAccountHistoryResponse{}
		var err error
		res.Entries, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, historyPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.HistoryEntry, string, *bankdv1.ReadMeta, error) {
				r, err := c.ledger.ListAccountHistory(ctx, connect.NewRequest(&bankdv1.ListAccountHistoryRequest{
					AccountId: args[0], PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Entries, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printHistory(res.Entries)
		return nil
	}
}

// --- locks ---

func lockAcquire(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	holder := fs.String("holder", "", "who holds the lease (required)")
	ttl := fs.Duration("ttl", 10*time.Second, "lease length")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "NAME"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.AcquireLockResponse, error) {
			r, err := c.lock.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{Name: args[0], Holder: *holder, TtlMs: ttl.Milliseconds()}))
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
		a.printLock(args[0], res.Lock)
		return nil
	}
}

func lockRenew(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	holder := fs.String("holder", "", "holder of the lease (required)")
	token := fs.Uint64("lock-token", 0, "fencing token from acquire (required; -token is the bearer token)")
	ttl := fs.Duration("ttl", 10*time.Second, "new lease length from now")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "NAME"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.RenewLockResponse, error) {
			r, err := c.lock.Renew(ctx, connect.NewRequest(&bankdv1.RenewLockRequest{Name: args[0], Holder: *holder, Token: *token, TtlMs: ttl.Milliseconds()}))
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
		a.printLock(args[0], res.Lock)
		return nil
	}
}

func lockRelease(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	holder := fs.String("holder", "", "holder of the lease (required)")
	token := fs.Uint64("lock-token", 0, "fencing token from acquire (required; -token is the bearer token)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "NAME"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.ReleaseLockResponse, error) {
			r, err := c.lock.Release(ctx, connect.NewRequest(&bankdv1.ReleaseLockRequest{Name: args[0], Holder: *holder, Token: *token}))
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
		fmt.Fprintf(a.stdout, "lock %s released\n", args[0])
		return nil
	}
}

func lockGet(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "NAME"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetLockResponse, error) {
			r, err := c.lock.Get(ctx, connect.NewRequest(&bankdv1.GetLockRequest{Name: args[0], Consistency: a.consistency()}))
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
		a.printLock(args[0], res.Lock)
		return nil
	}
}

// --- events ---

func watch(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	from := fs.Uint64("from", 0, "first index to deliver (to resume: last index seen + 1)")
	count := fs.Int("count", 0, "stop after this many events (0: follow forever)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if *count < 0 {
			return usageErrorf("-count must be >= 0")
		}
		return a.watch(ctx, *from, *count)
	}
}

// watch streams events from `from`, one line each. When the stream breaks it reconnects (to
// the next node in -addr) and resumes at the last index seen + 1, so no event is missed or
// repeated. Refusals that a retry cannot fix (bad token, bad request) end it.
func (a *app) watch(ctx context.Context, from uint64, count int) error {
	next, seen := from, 0
	backoff := watchFirstBackoff
	for {
		addr := a.addrs[a.current]
		stream, err := a.clientsFor(addr).event.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: next}))
		if err == nil {
			for stream.Receive() {
				ev := stream.Msg().GetEvent()
				if ev.GetIndex() < next {
					continue // never print an event twice
				}
				if err := a.printEvent(ev); err != nil {
					_ = stream.Close()
					return err
				}
				next = ev.GetIndex() + 1
				backoff = watchFirstBackoff
				seen++
				if count > 0 && seen >= count {
					_ = stream.Close()
					return nil
				}
			}
			err = stream.Err()
			_ = stream.Close()
		}
		if ctx.Err() != nil {
			return nil // interrupted by the user
		}
		if err == nil {
			err = errors.New("stream ended")
		}
		switch connect.CodeOf(err) {
		case connect.CodeUnauthenticated, connect.CodePermissionDenied, connect.CodeInvalidArgument, connect.CodeUnimplemented:
			return err
		}
		fmt.Fprintf(a.stderr, "bankctl: watch: %s: %s; reconnecting from index %d in %s\n", addr, describeError(err), next, backoff)
		a.current = (a.current + 1) % len(a.addrs)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// --- cluster ---

func clusterStatus(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.StatusResponse, error) {
			r, err := c.cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
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
		a.printStatus(res)
		return nil
	}
}

func clusterMembers(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.MembersResponse, error) {
			r, err := c.cluster.Members(ctx, connect.NewRequest(&bankdv1.MembersRequest{}))
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
		a.printMembers(res.Members)
		return nil
	}
}

func clusterLeader(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.LeaderResponse, error) {
			r, err := c.cluster.Leader(ctx, connect.NewRequest(&bankdv1.LeaderRequest{}))
			if err != nil {
				return nil, err
			}
			if r.Msg.LeaderId == "" {
				// Let call try the next node, and fail the command when none knows a leader.
				return nil, connect.NewError(connect.CodeUnavailable, errors.New("no leader right now; retry shortly"))
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printTable([]string{"LEADER", "RAFT ID", "API ADDR", "TERM"},
			[][]string{{res.LeaderId, res.LeaderRaftId, res.LeaderApiAddr, fmt.Sprint(res.Term)}})
		return nil
	}
}

func clusterTransferLeader(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return usageErrorf("want [NODE], got %d arguments", len(args))
		}
		target := ""
		if len(args) == 1 {
			target = args[0]
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.TransferLeadershipResponse, error) {
			r, err := c.cluster.TransferLeadership(ctx, connect.NewRequest(&bankdv1.TransferLeadershipRequest{TargetNodeId: target}))
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
		fmt.Fprintf(a.stdout, "leader is now %s\n", res.NewLeaderId)
		return nil
	}
}

func clusterRemove(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "NODE"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.RemoveNodeResponse, error) {
			r, err := c.cluster.RemoveNode(ctx, connect.NewRequest(&bankdv1.RemoveNodeRequest{Id: args[0]}))
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
		fmt.Fprintf(a.stdout, "removed %s (raft id %s)\n", args[0], res.RemovedRaftId)
		return nil
	}
}

// clusterHash asks every node in -addr (not only the first that answers) for its state hash.
func clusterHash(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		var (
			rows     [][]string
			answered int
			failed   error
		)
		for _, addr := range a.addrs {
			cctx, cancel := context.WithTimeout(ctx, a.opts.timeout)
			r, err := a.clientsFor(addr).cluster.StateHash(cctx, connect.NewRequest(&bankdv1.StateHashRequest{}))
			cancel()
			if err != nil {
				fmt.Fprintf(a.stderr, "bankctl: %s: %s\n", addr, describeError(err))
				failed = err
				continue
			}
			answered++
			if a.json() {
				if err := a.printJSONLine(r.Msg); err != nil {
					return err
				}
				continue
			}
			rows = append(rows, []string{r.Msg.NodeId, fmt.Sprint(r.Msg.AppliedIndex), r.Msg.Sha256})
		}
		if !a.json() {
			a.printTable([]string{"NODE", "APPLIED INDEX", "SHA256"}, rows)
		}
		if answered == 0 {
			return failed
		}
		return nil
	}
}

// checkListLimit checks a list command's -limit: 1 to maxListAccounts.
func checkListLimit(limit int) error {
	if limit <= 0 || limit > maxListAccounts {
		return usageErrorf("-limit must be 1-%d", maxListAccounts)
	}
	return nil
}
