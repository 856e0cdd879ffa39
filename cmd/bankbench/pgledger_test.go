package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// startTestLedger starts a PostgreSQL server with the ledger's schema and `accounts` customer
// accounts, or skips the test when PostgreSQL is not installed.
func startTestLedger(t *testing.T, accounts int) *pgLedger {
	t.Helper()
	binDir, err := findPostgres()
	if errors.Is(err, errNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	s, err := startPostgres(ctx, binDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop()
		_ = os.RemoveAll(s.dir)
	})
	pool, err := pgxpool.New(ctx, s.connString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	l := &pgLedger{pool: pool}
	if err := l.createSchema(ctx, accounts); err != nil {
		t.Fatal(err)
	}
	return l
}

// The two ways a transfer is posted (post_transfer for a single transfer, post for several)
// give the outcomes bankd's ledger gives.
func TestPGLedgerRules(t *testing.T) {
	l := startTestLedger(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A non-negative liability (a customer without overdraft) and an account in another currency.
	if _, err := l.pool.Exec(ctx, `INSERT INTO accounts (id, currency, kind, non_negative) VALUES
		('alice-one', 'BTC', 'liability', true), ('alice-batch', 'BTC', 'liability', true), ('usd', 'USD', 'asset', false)`); err != nil {
		t.Fatal(err)
	}
	balance := func(id string) (debits, credits int64) {
		t.Helper()
		if err := l.pool.QueryRow(ctx, `SELECT debits_posted, credits_posted FROM accounts WHERE id = $1`, id).Scan(&debits, &credits); err != nil {
			t.Fatal(err)
		}
		return debits, credits
	}
	for _, path := range []string{"one", "batch"} {
		t.Run(path, func(t *testing.T) {
			alice := "alice-" + path
			post := func(id, from, to string, amount int64, currency string) pgCode {
				t.Helper()
				tr := &bankdv1.Transfer{Id: path + "-" + id, DebitAccountId: from, CreditAccountId: to, Amount: amount, Currency: currency}
				if path == "one" {
					code, err := l.postOne(ctx, tr)
					if err != nil {
						t.Fatal(err)
					}
					return code
				}
				codes, err := l.post(ctx, []*bankdv1.Transfer{tr})
				if err != nil {
					t.Fatal(err)
				}
				return codes[0]
			}
			steps := []struct {
				id, from, to string
				amount       int64
				currency     string
				want         pgCode
			}{
				{"t1", "reserve", alice, 100, "BTC", pgOK},
				{"t1", "reserve", alice, 100, "BTC", pgReplayed},
				{"t1", "reserve", alice, 101, "BTC", pgAlreadyExists},
				{"t2", alice, "c0", 250, "BTC", pgInsufficientFunds},
				{"t2", alice, "c0", 30, "BTC", pgOK}, // the refused t2 left nothing behind
				{"t3", "reserve", "nobody", 1, "BTC", pgNotFound},
				{"t4", "reserve", "usd", 1, "BTC", pgInvalid},
				{"t5", "reserve", "reserve", 1, "BTC", pgInvalid},
				{"t6", "reserve", alice, 0, "BTC", pgInvalid},
				{"t7", "c1", "c0", 5, "BTC", pgOK}, // c1 has no overdraft rule: it goes below zero
			}
			for _, s := range steps {
				if got := post(s.id, s.from, s.to, s.amount, s.currency); got != s.want {
					t.Fatalf("%s %s -> %s %d %s: %s, want %s", s.id, s.from, s.to, s.amount, s.currency, got, s.want)
				}
			}
			if d, c := balance(alice); d != 30 || c != 100 {
				t.Fatalf("%s: debits %d credits %d, want 30 and 100", alice, d, c)
			}
		})
	}
	if err := l.checkBalanced(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if d, c := balance("c0"); d != 0 || c != 70 {
		t.Fatalf("c0: debits %d credits %d, want 0 and 70", d, c)
	}
}

// Within one request, a second transfer with an id the first took is a retry of it.
func TestPGLedgerRequestRepeatsAnID(t *testing.T) {
	l := startTestLedger(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts := []*bankdv1.Transfer{
		{Id: "x", DebitAccountId: "reserve", CreditAccountId: "c0", Amount: 7, Currency: "BTC"},
		{Id: "x", DebitAccountId: "reserve", CreditAccountId: "c0", Amount: 7, Currency: "BTC"},
		{Id: "x", DebitAccountId: "reserve", CreditAccountId: "c1", Amount: 7, Currency: "BTC"},
	}
	codes, err := l.post(ctx, ts)
	if err != nil {
		t.Fatal(err)
	}
	if want := []pgCode{pgOK, pgReplayed, pgAlreadyExists}; fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	if err := l.checkBalanced(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

// Requests that touch the same accounts in opposite directions queue on their row locks
// instead of deadlocking, and the ledger adds up afterwards.
func TestPGLedgerConcurrentRequests(t *testing.T) {
	const accounts, workers, requests, perRequest = 10, 8, 10, 50
	l := startTestLedger(t, accounts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range requests {
				ts := make([]*bankdv1.Transfer, perRequest)
				for i := range ts {
					from, to := fmt.Sprintf("c%d", (i+w)%accounts), fmt.Sprintf("c%d", (i+w+1+r)%accounts)
					if w%2 == 1 {
						from, to = to, from
					}
					if from == to {
						from = "reserve"
					}
					ts[i] = &bankdv1.Transfer{Id: fmt.Sprintf("w%d-r%d-%d", w, r, i), DebitAccountId: from, CreditAccountId: to, Amount: 1, Currency: "BTC"}
				}
				if err := l.send(ctx, ts); err != nil {
					errs <- err
					return
				}
				if err := l.send(ctx, ts[:1]); err != nil { // a retry through post_transfer
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.checkBalanced(ctx, workers*requests*perRequest); err != nil {
		t.Fatal(err)
	}
}
