package main

// The PostgreSQL side of the comparison: a double-entry ledger in plain tables that applies the
// same transfers as bankd's ledger with the same checks, one transaction per request.

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// pgSchema is the ledger: accounts with their posted totals, transfers keyed by the client's id
// (a retry finds its id taken), and one history row per account a transfer touches (bankd's
// ledger writes one history entry per account, keyed by account and log position).
const pgSchema = `
CREATE TABLE accounts (
	id             text PRIMARY KEY,
	currency       text NOT NULL,
	kind           text NOT NULL CHECK (kind IN ('asset', 'liability', 'equity', 'income', 'expense')),
	non_negative   boolean NOT NULL DEFAULT false,
	debits_posted  bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
	credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
	created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE transfers (
	id                text PRIMARY KEY,
	debit_account_id  text NOT NULL REFERENCES accounts (id),
	credit_account_id text NOT NULL REFERENCES accounts (id),
	amount            bigint NOT NULL CHECK (amount > 0),
	currency          text NOT NULL,
	created_at        timestamptz NOT NULL DEFAULT now(),
	CHECK (debit_account_id <> credit_account_id)
);
CREATE TABLE history (
	account_id           text NOT NULL,
	seq                  bigint GENERATED ALWAYS AS IDENTITY,
	transfer_id          text NOT NULL,
	debits_posted_delta  bigint NOT NULL,
	credits_posted_delta bigint NOT NULL,
	debits_posted_after  bigint NOT NULL,
	credits_posted_after bigint NOT NULL,
	at                   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, seq)
);

-- available is the balance as bankd derives it from posted totals: credit-normal kinds grow
-- with credits, the others (asset, expense) with debits.
CREATE FUNCTION available(kind text, debits bigint, credits bigint) RETURNS bigint
IMMUTABLE LANGUAGE sql AS $$
	SELECT CASE WHEN kind IN ('liability', 'equity', 'income') THEN credits - debits ELSE debits - credits END
$$;

-- post_transfer applies one transfer with the rules of post (pgledger.go), in the caller's
-- transaction: a single-transfer request calls it alone, so that the transaction is one round
-- trip and the rows stay locked only while the server works and flushes the commit.
CREATE FUNCTION post_transfer(p_id text, p_debit text, p_credit text, p_amount bigint, p_currency text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d accounts;
	c accounts;
	s transfers;
BEGIN
	IF p_amount <= 0 OR p_debit = p_credit OR p_id = '' THEN
		RETURN 'INVALID';
	END IF;
	PERFORM 1 FROM accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE;
	SELECT * INTO d FROM accounts WHERE id = p_debit;
	SELECT * INTO c FROM accounts WHERE id = p_credit;
	IF d.id IS NULL OR c.id IS NULL THEN
		RETURN 'NOT_FOUND';
	END IF;
	IF d.currency <> p_currency OR c.currency <> p_currency THEN
		RETURN 'INVALID';
	END IF;
	INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, currency)
	VALUES (p_id, p_debit, p_credit, p_amount, p_currency)
	ON CONFLICT (id) DO NOTHING;
	IF NOT FOUND THEN
		SELECT * INTO s FROM transfers WHERE id = p_id;
		IF (s.debit_account_id, s.credit_account_id, s.amount, s.currency) = (p_debit, p_credit, p_amount, p_currency) THEN
			RETURN 'REPLAYED';
		END IF;
		RETURN 'ALREADY_EXISTS';
	END IF;
	IF d.debits_posted > 9223372036854775807 - p_amount OR c.credits_posted > 9223372036854775807 - p_amount THEN
		DELETE FROM transfers WHERE id = p_id;
		RETURN 'OVERFLOW';
	END IF;
	IF (d.non_negative AND available(d.kind, d.debits_posted + p_amount, d.credits_posted) < least(0, available(d.kind, d.debits_posted, d.credits_posted)))
		OR (c.non_negative AND available(c.kind, c.debits_posted, c.credits_posted + p_amount) < least(0, available(c.kind, c.debits_posted, c.credits_posted))) THEN
		DELETE FROM transfers WHERE id = p_id;
		RETURN 'INSUFFICIENT_FUNDS';
	END IF;
	UPDATE accounts SET debits_posted = debits_posted + p_amount WHERE id = p_debit RETURNING * INTO d;
	UPDATE accounts SET credits_posted = credits_posted + p_amount WHERE id = p_credit RETURNING * INTO c;
	INSERT INTO history (account_id, transfer_id, debits_posted_delta, credits_posted_delta, debits_posted_after, credits_posted_after)
	VALUES (d.id, p_id, p_amount, 0, d.debits_posted, d.credits_posted),
	       (c.id, p_id, 0, p_amount, c.debits_posted, c.credits_posted);
	RETURN 'OK';
END
$$;
`

// The statements of a request of several transfers (post; a single transfer goes through
// post_transfer). A request is one transaction sent in two pipelined round trips:
//
//  1. BEGIN; lock every account the request touches, FOR UPDATE and in the order of their ids,
//     so that two requests sharing accounts queue instead of deadlocking (every request here
//     shares "reserve": the lock on it orders all of them, as Raft's log orders bankd's); insert
//     the transfers whose accounts exist in their currency, skipping ids already taken.
//  2. Write the accounts' new totals and the history rows, drop the transfers a balance check
//     refused, read the stored bodies of ids that were taken; COMMIT.
//
// The balances are checked and computed in between, from the locked rows.
const (
	pgLock = `SELECT id, currency, kind, non_negative, debits_posted, credits_posted
	FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE`
	pgInsertTransfers = `INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, currency)
	SELECT t.id, t.debit, t.credit, t.amount, t.currency
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY AS t(id, debit, credit, amount, currency, n)
	JOIN accounts d ON d.id = t.debit AND d.currency = t.currency
	JOIN accounts c ON c.id = t.credit AND c.currency = t.currency
	ORDER BY t.n
	ON CONFLICT (id) DO NOTHING
	RETURNING id`
	pgUpdateAccounts = `UPDATE accounts a SET debits_posted = u.debits, credits_posted = u.credits
	FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(id, debits, credits)
	WHERE a.id = u.id`
	pgInsertHistory = `INSERT INTO history (account_id, transfer_id, debits_posted_delta, credits_posted_delta, debits_posted_after, credits_posted_after)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])`
	pgDeleteTransfers = `DELETE FROM transfers WHERE id = ANY($1)`
	pgStoredTransfers = `SELECT id, debit_account_id, credit_account_id, amount, currency FROM transfers WHERE id = ANY($1)`
	pgPostTransfer    = `SELECT post_transfer($1, $2, $3, $4, $5)`
)

// pgCode is the outcome of one transfer, named like bankd's result codes.
type pgCode int

const (
	pgOK                pgCode = iota
	pgReplayed                 // the id was taken by a transfer with the same body: a retry
	pgAlreadyExists            // the id was taken by a transfer with another body
	pgInvalid                  // amount not positive, same account on both sides, currency mismatch
	pgNotFound                 // an account does not exist
	pgInsufficientFunds        // a non-negative account's available balance would drop below zero
	pgOverflow                 // a total would leave int64
)

var pgCodeNames = [...]string{"OK", "REPLAYED", "ALREADY_EXISTS", "INVALID", "NOT_FOUND", "INSUFFICIENT_FUNDS", "OVERFLOW"}

func (c pgCode) String() string { return pgCodeNames[c] }

// pgAccount is a locked account row.
type pgAccount struct {
	id, currency, kind string
	nonNegative        bool
	debits, credits    int64
	changed            bool
}

// available is the balance as bankd derives it from posted totals (the SQL function available
// is the same): credit-normal kinds (liability, equity, income) grow with credits, the others
// (asset, expense) with debits.
func available(kind string, debits, credits int64) int64 {
	switch kind {
	case "liability", "equity", "income":
		return credits - debits
	default:
		return debits - credits
	}
}

// refuses reports whether bankd's rule refuses moving a to these totals: a change that lowers a
// non-negative account's available balance, to below zero.
func (a *pgAccount) refuses(debits, credits int64) bool {
	return a.nonNegative && available(a.kind, debits, credits) < min(0, available(a.kind, a.debits, a.credits))
}

// pgKind is the schema's name for an account kind.
func pgKind(k bankdv1.AccountKind) string {
	switch k {
	case bankdv1.AccountKind_ACCOUNT_KIND_ASSET:
		return "asset"
	case bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY:
		return "liability"
	case bankdv1.AccountKind_ACCOUNT_KIND_EQUITY:
		return "equity"
	case bankdv1.AccountKind_ACCOUNT_KIND_INCOME:
		return "income"
	default:
		return "expense"
	}
}

// pgLedger applies transfers to the schema through a pool of connections.
type pgLedger struct{ pool *pgxpool.Pool }

// createSchema creates the tables and the accounts bankbench gives bankd: "reserve" (an asset)
// and c0..c<n-1> (liabilities without the non-negative flag), copied in at once.
func (l *pgLedger) createSchema(ctx context.Context, accounts int) error {
	if _, err := l.pool.Exec(ctx, pgSchema); err != nil {
		return fmt.Errorf("create the schema: %w", err)
	}
	rows := [][]any{{"reserve", "BTC", pgKind(bankdv1.AccountKind_ACCOUNT_KIND_ASSET), false}}
	for i := 0; i < accounts; i++ {
		rows = append(rows, []any{fmt.Sprintf("c%d", i), "BTC", pgKind(bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY), false})
	}
	if _, err := l.pool.CopyFrom(ctx, pgx.Identifier{"accounts"}, []string{"id", "currency", "kind", "non_negative"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copy %d accounts: %w", len(rows), err)
	}
	if _, err := l.pool.Exec(ctx, "ANALYZE accounts"); err != nil {
		return fmt.Errorf("analyze accounts: %w", err)
	}
	return nil
}

// postOne applies one transfer in a transaction of its own (post_transfer).
func (l *pgLedger) postOne(ctx context.Context, t *bankdv1.Transfer) (pgCode, error) {
	var name string
	if err := l.pool.QueryRow(ctx, pgPostTransfer, t.Id, t.DebitAccountId, t.CreditAccountId, t.Amount, t.Currency).Scan(&name); err != nil {
		return 0, fmt.Errorf("post_transfer: %w", err)
	}
	if i := slices.Index(pgCodeNames[:], name); i >= 0 {
		return pgCode(i), nil
	}
	return 0, fmt.Errorf("post_transfer returned %q", name)
}

// post applies ts in one transaction, in order, and returns each transfer's outcome. Like
// bankd's CreateTransfers without linked chains, a refused transfer leaves no trace and the
// others still apply. An error means the whole transaction failed and nothing was applied.
func (l *pgLedger) post(ctx context.Context, ts []*bankdv1.Transfer) ([]pgCode, error) {
	codes := make([]pgCode, len(ts))
	var ids, debits, credits, currencies []string
	var amounts []int64
	touched := map[string]bool{}
	for i, t := range ts {
		if t.Amount <= 0 || t.DebitAccountId == t.CreditAccountId || t.Id == "" {
			codes[i] = pgInvalid
			continue
		}
		ids, debits, credits = append(ids, t.Id), append(debits, t.DebitAccountId), append(credits, t.CreditAccountId)
		amounts, currencies = append(amounts, t.Amount), append(currencies, t.Currency)
		touched[t.DebitAccountId], touched[t.CreditAccountId] = true, true
	}
	if len(ids) == 0 {
		return codes, nil
	}
	lockIDs := make([]string, 0, len(touched))
	for id := range touched {
		lockIDs = append(lockIDs, id)
	}
	slices.Sort(lockIDs)

	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire a connection: %w", err)
	}
	// A connection released inside a transaction (after an error) is closed by the pool, and
	// the server rolls the transaction back.
	defer conn.Release()

	// Round trip 1: begin, lock, insert.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(pgLock, lockIDs)
	b.Queue(pgInsertTransfers, ids, debits, credits, amounts, currencies)
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	accounts := map[string]*pgAccount{}
	rows, _ := br.Query()
	for rows.Next() {
		a := &pgAccount{}
		if err := rows.Scan(&a.id, &a.currency, &a.kind, &a.nonNegative, &a.debits, &a.credits); err != nil {
			rows.Close()
			br.Close()
			return nil, fmt.Errorf("read a locked account: %w", err)
		}
		accounts[a.id] = a
	}
	if err := rows.Err(); err != nil {
		br.Close()
		return nil, fmt.Errorf("lock %d accounts: %w", len(lockIDs), err)
	}
	inserted := map[string]bool{}
	rows, _ = br.Query()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			br.Close()
			return nil, fmt.Errorf("read an inserted transfer id: %w", err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		br.Close()
		return nil, fmt.Errorf("insert %d transfers: %w", len(ids), err)
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("round trip 1: %w", err)
	}

	// Apply the inserted transfers in order to the locked rows, as bankd's changeBalance does:
	// a total must stay within int64, and a non-negative account's available balance may not
	// be lowered below zero. Neither happens in this workload (no customer account is
	// non-negative; "reserve" is an asset, whose balance grows with the debits), but the checks
	// run, as bankd's do.
	var hAcc, hTransfer []string
	var hDebitDelta, hCreditDelta, hDebitsAfter, hCreditsAfter []int64
	var refused, taken []string
	takenAt := map[string][]int{}
	for i, t := range ts {
		if codes[i] == pgInvalid {
			continue
		}
		d, c := accounts[t.DebitAccountId], accounts[t.CreditAccountId]
		if !inserted[t.Id] {
			switch {
			case d == nil || c == nil:
				codes[i] = pgNotFound
			case d.currency != t.Currency || c.currency != t.Currency:
				codes[i] = pgInvalid
			default: // the id is taken: by an earlier transaction or earlier in this request
				if takenAt[t.Id] == nil {
					taken = append(taken, t.Id)
				}
				takenAt[t.Id] = append(takenAt[t.Id], i)
			}
			continue
		}
		delete(inserted, t.Id) // a later transfer with the same id in this request is a retry
		nd, nc := d.debits+t.Amount, c.credits+t.Amount
		switch {
		case nd < d.debits || nc < c.credits:
			codes[i] = pgOverflow
		case d.refuses(nd, d.credits) || c.refuses(c.debits, nc):
			codes[i] = pgInsufficientFunds
		}
		if codes[i] != pgOK {
			refused = append(refused, t.Id)
			continue
		}
		d.debits, c.credits, d.changed, c.changed = nd, nc, true, true
		hAcc, hTransfer = append(hAcc, d.id, c.id), append(hTransfer, t.Id, t.Id)
		hDebitDelta, hCreditDelta = append(hDebitDelta, t.Amount, 0), append(hCreditDelta, 0, t.Amount)
		hDebitsAfter, hCreditsAfter = append(hDebitsAfter, d.debits, c.debits), append(hCreditsAfter, d.credits, c.credits)
	}
	var uIDs []string
	var uDebits, uCredits []int64
	for _, id := range lockIDs {
		if a := accounts[id]; a != nil && a.changed {
			uIDs, uDebits, uCredits = append(uIDs, id), append(uDebits, a.debits), append(uCredits, a.credits)
		}
	}

	// Round trip 2: write, commit.
	b = &pgx.Batch{}
	if len(uIDs) > 0 {
		b.Queue(pgUpdateAccounts, uIDs, uDebits, uCredits)
		b.Queue(pgInsertHistory, hAcc, hTransfer, hDebitDelta, hCreditDelta, hDebitsAfter, hCreditsAfter)
	}
	if len(taken) > 0 {
		b.Queue(pgStoredTransfers, taken)
	}
	if len(refused) > 0 {
		b.Queue(pgDeleteTransfers, refused)
	}
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, b)
	if len(uIDs) > 0 {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("update %d accounts: %w", len(uIDs), err)
		}
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("insert %d history rows: %w", len(hAcc), err)
		}
	}
	if len(taken) > 0 {
		rows, _ := br.Query()
		for rows.Next() {
			var s bankdv1.Transfer
			if err := rows.Scan(&s.Id, &s.DebitAccountId, &s.CreditAccountId, &s.Amount, &s.Currency); err != nil {
				rows.Close()
				br.Close()
				return nil, fmt.Errorf("read a stored transfer: %w", err)
			}
			for _, i := range takenAt[s.Id] {
				t := ts[i]
				codes[i] = pgAlreadyExists
				if t.DebitAccountId == s.DebitAccountId && t.CreditAccountId == s.CreditAccountId && t.Amount == s.Amount && t.Currency == s.Currency {
					codes[i] = pgReplayed
				}
			}
		}
		if err := rows.Err(); err != nil {
			br.Close()
			return nil, fmt.Errorf("read %d stored transfers: %w", len(taken), err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("round trip 2: %w", err)
	}
	return codes, nil
}

// checkBalanced verifies the ledger after the runs: debits equal credits over all accounts,
// the transfers table holds every acknowledged transfer, and two history rows each.
func (l *pgLedger) checkBalanced(ctx context.Context, acknowledged int64) error {
	var debits, credits, transfers, history int64
	err := l.pool.QueryRow(ctx, `SELECT
		(SELECT coalesce(sum(debits_posted), 0) FROM accounts),
		(SELECT coalesce(sum(credits_posted), 0) FROM accounts),
		(SELECT count(*) FROM transfers),
		(SELECT count(*) FROM history)`).Scan(&debits, &credits, &transfers, &history)
	if err != nil {
		return fmt.Errorf("sum the ledger: %w", err)
	}
	switch {
	case debits != credits:
		return fmt.Errorf("debits %d, credits %d", debits, credits)
	case transfers < acknowledged:
		return fmt.Errorf("%d transfers stored, %d acknowledged", transfers, acknowledged)
	case history != 2*transfers:
		return fmt.Errorf("%d history rows for %d transfers", history, transfers)
	}
	return nil
}

// send is the sendFunc of every PostgreSQL client: one transfer through post_transfer, more
// through post.
func (l *pgLedger) send(ctx context.Context, ts []*bankdv1.Transfer) error {
	if len(ts) == 1 {
		code, err := l.postOne(ctx, ts[0])
		if err != nil {
			return err
		}
		return firstRefusal(ts, []pgCode{code})
	}
	codes, err := l.post(ctx, ts)
	if err != nil {
		return err
	}
	return firstRefusal(ts, codes)
}

// firstRefusal is an error naming the first transfer that was neither applied nor replayed.
func firstRefusal(ts []*bankdv1.Transfer, codes []pgCode) error {
	for i, c := range codes {
		if c != pgOK && c != pgReplayed {
			return fmt.Errorf("transfer %q: %s", ts[i].Id, c)
		}
	}
	return nil
}
