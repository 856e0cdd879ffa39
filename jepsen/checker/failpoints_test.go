package checker

import (
	"testing"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/bank"
	"github.com/bankd/bankd/jepsen/workload/locks"
)

func TestFreshReads(t *testing.T) {
	fund := func() *builder {
		return new(builder).
			transfer(1, history.OK, xfer("fund-c0", bank.ReserveID, "c0", 10)).
			transfer(2, history.OK, xfer("fund-c1", bank.ReserveID, "c1", 5))
	}
	t.Run("fresh reads are valid", func(t *testing.T) {
		b := fund().read(3, balances(10, 5)).read(4, balances(10, 5))
		// A read concurrent with a transfer may or may not see it.
		b.add(5, history.Invoke, bank.FRead, nil)
		b.transfer(1, history.OK, xfer("t1", bank.ReserveID, "c0", 1))
		b.add(5, history.OK, bank.FRead, balances(10, 5))
		expect(t, FreshReads(b.ops), Valid, "")
	})
	t.Run("a read missing an acknowledged transfer", func(t *testing.T) {
		b := fund().read(3, balances(10, 0))
		expect(t, FreshReads(b.ops), Invalid, "account c1 credits_posted is 0, but transfers acknowledged before the read began sum to 5")
	})
	t.Run("a retried transfer counts once", func(t *testing.T) {
		b := fund().transfer(1, history.OK, xfer("fund-c0", bank.ReserveID, "c0", 10)).read(3, balances(10, 5))
		expect(t, FreshReads(b.ops), Valid, "")
	})
	t.Run("a read behind an earlier completed read", func(t *testing.T) {
		b := new(builder)
		b.add(1, history.Invoke, bank.FTransfer, xfer("fund-c0", bank.ReserveID, "c0", 10))
		b.read(3, balances(10, 0))
		b.read(4, balances(0, 0)) // the transfer is not acknowledged yet, but read 3 saw it
		expect(t, FreshReads(b.ops), Invalid, "account c0 credits_posted is 0, but an earlier read")
	})
	t.Run("no reads is unknown", func(t *testing.T) {
		expect(t, FreshReads(fund().ops), Unknown, "")
	})
}

func TestLockExclusive(t *testing.T) {
	acquire := func(b *builder, process int, g locks.Grant) {
		b.add(process, history.Invoke, locks.FAcquire, locks.AcquireValue{Name: g.Name, Holder: g.Holder, TTLMs: 500})
		b.add(process, history.OK, locks.FAcquire, g)
	}
	release := func(b *builder, process int, g locks.Grant) {
		v := locks.ReleaseValue{Name: g.Name, Holder: g.Holder, Token: g.Token}
		b.add(process, history.Invoke, locks.FRelease, v)
		b.add(process, history.OK, locks.FRelease, v)
	}
	a := locks.Grant{Name: "l", Holder: "p1", Token: 10, AcquiredAt: 1000, ExpiresAt: 1500}
	t.Run("grants after expiry or release are valid", func(t *testing.T) {
		b := new(builder)
		acquire(b, 1, a)
		acquire(b, 2, locks.Grant{Name: "l", Holder: "p2", Token: 12, AcquiredAt: 1500, ExpiresAt: 2000})
		release(b, 2, locks.Grant{Name: "l", Holder: "p2", Token: 12})
		acquire(b, 3, locks.Grant{Name: "l", Holder: "p3", Token: 14, AcquiredAt: 1600, ExpiresAt: 2100})
		acquire(b, 4, locks.Grant{Name: "other", Holder: "p4", Token: 15, AcquiredAt: 1600, ExpiresAt: 2100})
		expect(t, LockExclusive(b.ops), Valid, "")
	})
	t.Run("a grant while another holder's lease runs", func(t *testing.T) {
		b := new(builder)
		acquire(b, 1, a)
		acquire(b, 2, locks.Grant{Name: "l", Holder: "p2", Token: 12, AcquiredAt: 1200, ExpiresAt: 1700})
		expect(t, LockExclusive(b.ops), Invalid, "lock l granted to p2 (token 12 at 1200")
	})
	t.Run("an extension counts", func(t *testing.T) {
		b := new(builder)
		acquire(b, 1, a)
		acquire(b, 1, locks.Grant{Name: "l", Holder: "p1", Token: 10, AcquiredAt: 1000, ExpiresAt: 1900})
		acquire(b, 2, locks.Grant{Name: "l", Holder: "p2", Token: 12, AcquiredAt: 1600, ExpiresAt: 2100})
		expect(t, LockExclusive(b.ops), Invalid, "while p1 held it (token 10 until 1900)")
	})
	t.Run("a release invoked after the new grant does not excuse it", func(t *testing.T) {
		b := new(builder)
		acquire(b, 1, a)
		acquire(b, 2, locks.Grant{Name: "l", Holder: "p2", Token: 12, AcquiredAt: 1200, ExpiresAt: 1700})
		release(b, 1, a)
		expect(t, LockExclusive(b.ops), Invalid, "had not released it")
	})
	t.Run("two holders under one token", func(t *testing.T) {
		b := new(builder)
		acquire(b, 1, a)
		acquire(b, 2, locks.Grant{Name: "l", Holder: "p2", Token: 10, AcquiredAt: 1000, ExpiresAt: 1500})
		expect(t, LockExclusive(b.ops), Invalid, "token 10 granted to both p1")
	})
	t.Run("no grants is unknown", func(t *testing.T) {
		expect(t, LockExclusive(nil), Unknown, "")
	})
}

func TestFencedWrites(t *testing.T) {
	// Grants of lock l at indexes 10 and 20; writes w1, w2 fenced with 10, w3 with 20.
	hist := func(outcome history.Type) []history.Op {
		b := new(builder)
		for i, g := range []locks.Grant{{Name: "l", Holder: "p1", Token: 10}, {Name: "l", Holder: "p2", Token: 20}} {
			b.add(i, history.Invoke, locks.FAcquire, locks.AcquireValue{Name: g.Name, Holder: g.Holder})
			b.add(i, history.OK, locks.FAcquire, g)
		}
		for i, v := range []locks.WriteValue{{ID: "w1", Lock: "l", Token: 10}, {ID: "w2", Lock: "l", Token: 10, Late: true}, {ID: "w3", Lock: "l", Token: 20}} {
			b.add(10+i, history.Invoke, locks.FWrite, v)
			b.add(10+i, outcome, locks.FWrite, v)
		}
		return b.ops
	}
	applied := func(as ...locks.Applied) *locks.Final { return &locks.Final{Applied: as} }
	tests := []struct {
		name    string
		ops     []history.Op
		final   *locks.Final
		want    Verdict
		example string
	}{
		{"writes under the grant they were fenced with, the late one refused",
			hist(history.Fail), applied(locks.Applied{ID: "w1", Index: 12}, locks.Applied{ID: "w3", Index: 22}), Valid, ""},
		{"a late write applied after the lock was granted anew",
			hist(history.Info), applied(locks.Applied{ID: "w1", Index: 12}, locks.Applied{ID: "w2", Index: 25}),
			Invalid, "write w2 fenced with l token 10 applied at index 25, after the lock was granted anew at 20"},
		{"tokens going backwards in commit order",
			hist(history.Info), applied(locks.Applied{ID: "w3", Index: 15}, locks.Applied{ID: "w1", Index: 16}),
			Invalid, "write w1 fenced with l token 10 applied at index 16, after write w3 fenced with the newer token 20"},
		{"an acknowledged write that is missing",
			hist(history.OK), applied(locks.Applied{ID: "w1", Index: 12}, locks.Applied{ID: "w2", Index: 13}),
			Invalid, "fenced write w3 was acknowledged but is not"},
		{"a resource transfer nobody asked for",
			hist(history.Fail), applied(locks.Applied{ID: "zz", Index: 12}), Invalid, "transfer zz into the resource account at index 12 was never invoked"},
		{"nothing applied proves nothing", hist(history.Fail), applied(), Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, FencedWrites(tt.ops, tt.final), tt.want, tt.example)
		})
	}
}
