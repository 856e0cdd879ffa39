package main

// The PostgreSQL run and the side-by-side table.

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// benchPostgres starts a PostgreSQL server, creates the ledger with w's accounts, runs (a) and
// (b) of w against it and prints each as it comes. The server is stopped when it returns.
func benchPostgres(ctx context.Context, w workload, keep bool) (sideResults, error) {
	binDir, err := findPostgres()
	if err != nil {
		return sideResults{}, err
	}
	s, err := startPostgres(ctx, binDir)
	if err != nil {
		return sideResults{}, fmt.Errorf("start PostgreSQL from %s: %w", binDir, err)
	}
	defer func() {
		s.stop()
		if !keep {
			_ = os.RemoveAll(s.dir)
		}
	}()

	cfg, err := pgxpool.ParseConfig(s.connString())
	if err != nil {
		return sideResults{}, fmt.Errorf("pool config: %w", err)
	}
	cfg.MaxConns = int32(max(w.clients, w.batchers, 1))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return sideResults{}, fmt.Errorf("connection pool: %w", err)
	}
	defer pool.Close()
	l := &pgLedger{pool: pool}
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := l.createSchema(setupCtx, w.accounts); err != nil {
		return sideResults{}, err
	}
	if err := warmPool(setupCtx, pool, int(cfg.MaxConns)); err != nil {
		return sideResults{}, err
	}
	fmt.Printf("bankbench: %s (%s), one server on a unix socket, %s, %d customer accounts, data in %s\n\n",
		s.version, binDir, strings.Join(pgSettings[:5], " "), w.accounts, s.dir)

	senders := func(int) sendFunc { return l.send }
	var res sideResults
	single := runLoad(ctx, senders, w.clients, 1, w.accounts, w.duration, "s")
	single.print(fmt.Sprintf("(a) PostgreSQL: single-transfer requests, %d concurrent clients", w.clients))
	fmt.Println()
	batch := runLoad(ctx, senders, w.batchers, w.batchSize, w.accounts, w.duration, "b")
	batch.print(fmt.Sprintf("(b) PostgreSQL: requests of %d transfers, %d concurrent clients", w.batchSize, w.batchers))
	fmt.Println()
	res.single, res.batch = &single, &batch

	checkCtx, cancelCheck := context.WithTimeout(ctx, time.Minute)
	defer cancelCheck()
	if err := l.checkBalanced(checkCtx, single.transfers+batch.transfers); err != nil {
		fmt.Printf("bankbench: the PostgreSQL ledger does not add up: %v\n\n", err)
	} else {
		fmt.Printf("PostgreSQL ledger checked after the runs: debits equal credits, every acknowledged transfer stored with its two history rows\n\n")
	}
	return res, nil
}

// warmPool opens n connections before the clock starts, as bankd's clients find their
// cluster's HTTP/2 connections open after account creation.
func warmPool(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("open connection %d of %d: %w", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}
	return nil
}

// stats are a run's throughput and latency percentiles.
func (r loadResult) stats() (perSecond float64, p50, p99 time.Duration) {
	sorted := slices.Clone(r.latencies)
	slices.Sort(sorted)
	return float64(r.transfers) / r.elapsed.Seconds(), pct(sorted, 0.50), pct(sorted, 0.99)
}

// printComparison prints bankd's and PostgreSQL's runs as one Markdown table. bankd's run
// with clients spread over the nodes is set against PostgreSQL's only server.
func printComparison(out io.Writer, w workload, bankd, pg sideResults) {
	cell := func(r *loadResult) string {
		if r == nil {
			return "-"
		}
		tps, p50, p99 := r.stats()
		s := fmt.Sprintf("%s transfers/s, p50 %s, p99 %s", thousands(tps), ms(p50), ms(p99))
		if r.errors > 0 {
			s += fmt.Sprintf(", %d failed requests", r.errors)
		}
		return s
	}
	ratio := func(a, b *loadResult) string {
		if a == nil || b == nil {
			return "-"
		}
		ta, _, _ := a.stats()
		tb, _, _ := b.stats()
		if tb == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", ta/tb)
	}
	rows := []struct {
		name     string
		bankd    *loadResult
		postgres *loadResult
	}{
		{fmt.Sprintf("(a) 1 transfer per request, %d clients, on the leader", w.clients), bankd.single, pg.single},
		{fmt.Sprintf("(a') 1 transfer per request, %d clients, spread over the nodes", w.clients), bankd.singleSpread, pg.single},
		{fmt.Sprintf("(b) %d transfers per request, %d clients, on the leader", w.batchSize, w.batchers), bankd.batch, pg.batch},
		{fmt.Sprintf("(b') %d transfers per request, %d clients, spread over the nodes", w.batchSize, w.batchers), bankd.batchSpread, pg.batch},
	}
	fmt.Fprintf(out, "bankd (3 nodes, Raft) against PostgreSQL (one server), same accounts and transfers, %s per run; ratio = bankd's transfers/s over PostgreSQL's\n\n", w.duration)
	fmt.Fprintln(out, "| workload | bankd | PostgreSQL | ratio |")
	fmt.Fprintln(out, "| --- | --- | --- | --- |")
	for _, r := range rows {
		if r.bankd == nil {
			continue
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s |\n", r.name, cell(r.bankd), cell(r.postgres), ratio(r.bankd, r.postgres))
	}
	fmt.Fprintln(out, "\nEvery transfer debits \"reserve\". PostgreSQL holds that row's lock until the commit's WAL")
	fmt.Fprintln(out, "is flushed, so its transactions commit one after another; bankd's concurrent requests share")
	fmt.Fprintln(out, "one Raft log append (BatchApplyCh) and one fsync.")
	fmt.Fprintln(out)
}

// thousands formats a rate with thousands separators: 15157.2 -> "15,157".
func thousands(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
