package fsm

import (
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// The books of the bank's own wallets. Each HOT or COLD wallet has an ASSET account
// wallet:<id> that mirrors its coins:
//
//	onchain-capital -> wallet:<id>   coins a transaction from outside pays the wallet, at final
//	                                 depth (an operator funding the hot wallet)
//	(payout.go)                      a batch takes amount + fee out of it at final depth
//
// A batch's change stays inside the wallet, so it is not booked. A transaction that spends the
// wallet's coins without being a batch of the cluster is not booked either: reconciliation
// shows it as a difference, which is what it is.

// WalletCapitalAccount is the EQUITY account coins arriving at the bank's own wallets from
// outside are booked against.
const WalletCapitalAccount = "onchain-capital"

// bookInflows books what a final transaction that is not one of our batches pays the bank's
// HOT and COLD wallets (deposit addresses are the deposits' business).
func (c *chainApply) bookInflows(rec *bankdv1.ChainTx) error {
	if _, ours, err := c.tx.get(batchTxKey(rec.Txid)); err != nil || ours {
		return err
	}
	for _, o := range rec.Outputs {
		ws := &bankdv1.WatchedScript{}
		if found, err := getProto(c.tx, scriptKey(o.Script), ws); err != nil {
			return err
		} else if !found || ws.AccountId != "" {
			continue
		}
		w := &bankdv1.Wallet{}
		if found, err := getProto(c.tx, walletKey(ws.WalletId), w); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("script table names wallet %q, which does not exist", ws.WalletId)
		}
		if w.Kind != bankdv1.WalletKind_WALLET_KIND_HOT && w.Kind != bankdv1.WalletKind_WALLET_KIND_COLD {
			continue
		}
		op := &bankdv1.Outpoint{Txid: rec.Txid, Vout: o.Vout}
		subject := "wallet " + w.Id
		if err := c.ensureWalletBooks(w.Id, subject); err != nil {
			return err
		}
		if err := c.a.book(c.tx, subject, &bankdv1.Transfer{
			Id: depositTransferID("f", op, 0), DebitAccountId: WalletAccount(w.Id), CreditAccountId: WalletCapitalAccount,
			Amount: o.ValueSat, ExternalRef: outpointString(op),
		}); err != nil {
			return err
		}
	}
	return nil
}

// ensureWalletBooks creates a wallet's ASSET account and the capital account if they are
// missing.
func (c *chainApply) ensureWalletBooks(walletID, subject string) error {
	return c.ensureBooks(subject, book{WalletAccount(walletID), bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		book{WalletCapitalAccount, bankdv1.AccountKind_ACCOUNT_KIND_EQUITY})
}

// book is an account of the payout books.
type book struct {
	id   string
	kind bankdv1.AccountKind
}

// ensureBooks creates the chain driver's BTC accounts of the payout books if they are missing;
// a refusal (an id taken by another owner) becomes a problem, and the transfers through that
// account then become problems too.
func (c *chainApply) ensureBooks(subject string, books ...book) error {
	for _, bk := range books {
		acc := &bankdv1.Account{Id: bk.id, Currency: "BTC", Kind: bk.kind}
		if err := c.a.ensureAccount(c.tx, acc); err != nil {
			if refusal, ok := asRefusal(err); ok {
				c.a.problem(subject, "books not written: %s", refusal.Message)
				continue
			}
			return err
		}
	}
	return nil
}

// WalletReconciliation compares each HOT and COLD wallet's ledger account with its UTXOs.
// Differences are expected only while transactions are on their way to final depth
// (unsettled counts them); settled, the difference must be zero.
func (f *FSM) WalletReconciliation() ([]*bankdv1.WalletReconciliation, error) {
	var out []*bankdv1.WalletReconciliation
	err := f.view(func(r pebble.Reader) error {
		byWallet := map[string]*bankdv1.WalletReconciliation{}
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagWallet}, UpperBound: []byte{tagWallet + 1}})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			w := &bankdv1.Wallet{}
			if err := proto.Unmarshal(it.Value(), w); err != nil {
				it.Close()
				return fmt.Errorf("corrupt wallet at %q: %w", it.Key(), err)
			}
			if w.Kind == bankdv1.WalletKind_WALLET_KIND_HOT || w.Kind == bankdv1.WalletKind_WALLET_KIND_COLD {
				rec := &bankdv1.WalletReconciliation{WalletId: w.Id, Kind: w.Kind}
				byWallet[w.Id] = rec
				out = append(out, rec)
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
		var scanErr error
		if err := scanProto(r, []byte{tagUtxo}, func() *bankdv1.Utxo { return &bankdv1.Utxo{} }, func(u *bankdv1.Utxo) {
			rec := byWallet[u.WalletId]
			if rec == nil || scanErr != nil {
				return
			}
			rec.UtxoSat += u.ValueSat
			rec.Utxos++
			settled, err := inflowSettled(r, u.Outpoint.Txid)
			if err != nil {
				scanErr = err
			} else if !settled {
				rec.UnsettledInflowSat += u.ValueSat
			}
		}); err != nil {
			return err
		}
		if scanErr != nil {
			return scanErr
		}
		if err := scanProto(r, []byte{tagBatch}, func() *bankdv1.PayoutBatch { return &bankdv1.PayoutBatch{} }, func(b *bankdv1.PayoutBatch) {
			if b.State != bankdv1.BatchState_BATCH_STATE_SIGNED && b.State != bankdv1.BatchState_BATCH_STATE_CONFIRMED {
				return
			}
			if rec := byWallet[b.WalletId]; rec != nil {
				rec.UnsettledBatches++
			}
			// A move into the cold wallet is on its way there too.
			if rec := byWallet[b.VaultWalletId]; rec != nil {
				rec.UnsettledBatches++
			}
		}); err != nil {
			return err
		}
		for _, rec := range out {
			acc := &bankdv1.Account{}
			if ok, err := readProto(r, accountKey(WalletAccount(rec.WalletId)), acc); err != nil {
				return err
			} else if ok {
				rec.LedgerSat = acc.Balance.GetDebitsPosted() - acc.Balance.GetCreditsPosted()
			}
			rec.DifferenceSat = rec.LedgerSat - rec.UtxoSat
		}
		return nil
	})
	return out, err
}

// inflowSettled reports whether a UTXO's transaction is booked: final, or one of our batches
// (whose change is not an inflow).
func inflowSettled(r pebble.Reader, txid string) (bool, error) {
	if _, ours, err := readValue(r, batchTxKey(txid)); err != nil || ours {
		return ours, err
	}
	rec := &bankdv1.ChainTx{}
	found, err := readProto(r, chainTxKey(txid), rec)
	if err != nil {
		return false, err
	}
	return found && rec.State == bankdv1.TxState_TX_STATE_FINAL, nil
}

// Solvency sums what the bank owes its customers (client-owned LIABILITY accounts, posted)
// against what the drivers' ASSET accounts hold: wallets, deposits not yet swept, and Lightning
// channels.
func (f *FSM) Solvency() (*bankdv1.Solvency, error) {
	s := &bankdv1.Solvency{}
	err := f.view(func(r pebble.Reader) error {
		return scanProto(r, []byte{tagAccount}, func() *bankdv1.Account { return &bankdv1.Account{} }, func(acc *bankdv1.Account) {
			if acc.Currency != "BTC" {
				return
			}
			b := acc.Balance
			switch o := accountOwner(acc); {
			case o == bankdv1.Owner_OWNER_CLIENT && acc.Kind == bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY:
				s.CustomerLiabilitiesSat += b.GetCreditsPosted() - b.GetDebitsPosted()
			case o != bankdv1.Owner_OWNER_CLIENT && acc.Kind == bankdv1.AccountKind_ACCOUNT_KIND_ASSET:
				held := b.GetDebitsPosted() - b.GetCreditsPosted()
				switch {
				case strings.HasPrefix(acc.Id, WalletAccountPrefix):
					s.WalletsSat += held
				case strings.HasPrefix(acc.Id, LightningNodeAccountPrefix):
					s.LightningSat += held
				default:
					s.DepositsSat += held
				}
			}
		})
	})
	s.AssetsSat = s.WalletsSat + s.DepositsSat + s.LightningSat
	s.SurplusSat = s.AssetsSat - s.CustomerLiabilitiesSat
	return s, err
}

// scanProto decodes every record under prefix.
func scanProto[T proto.Message](r pebble.Reader, prefix []byte, newRecord func() T, fn func(T)) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		rec := newRecord()
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			return fmt.Errorf("corrupt record at %x: %w", it.Key(), err)
		}
		fn(rec)
	}
	return it.Error()
}
