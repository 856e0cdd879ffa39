package fsm

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// attackGen makes the client commands of the random mix that go after what the drivers own,
// built from ids a client can read in the event stream: the drivers' transfers (deposits'
// pending credits, payments' holds, settlements), their pending ones, their accounts, and ids
// they will use later (a deposit's post, an invoice's settlement, the next payment hold).
type attackGen struct {
	next      uint64 // first event index not harvested yet
	transfers []string
	pendings  []string
	accounts  []string
	results   map[string]int
}

// harvest reads the events applied since the last call, as a client watching the stream would.
func (g *commandGen) harvest() {
	ag := &g.attack
	for {
		evs, err := g.tf.Events(ag.next, 1000)
		if err != nil {
			g.tf.t.Fatal(err)
		}
		if len(evs) == 0 {
			return
		}
		for _, ev := range evs {
			for _, it := range ev.Items {
				g.harvestItem(it)
			}
			ag.next = ev.Index + 1
		}
	}
}

func (g *commandGen) harvestItem(it *bankdv1.EventItem) {
	ag := &g.attack
	switch {
	case it.GetTransfer() != nil && it.GetTransfer().Owner != asClient:
		t := it.GetTransfer()
		ag.transfers = append(ag.transfers, t.Id)
		if t.State == bankdv1.TransferState_TRANSFER_STATE_PENDING {
			ag.pendings = append(ag.pendings, t.Id)
		}
	case it.GetAccountCreated() != nil && it.GetAccountCreated().Owner != asClient:
		ag.accounts = append(ag.accounts, it.GetAccountCreated().Id)
	case it.GetDeposit().GetTransferId() != "":
		ag.pendings = append(ag.pendings, it.GetDeposit().TransferId)
	case it.GetPayment().GetTransferId() != "":
		ag.pendings = append(ag.pendings, it.GetPayment().TransferId)
	}
}

func (g *commandGen) pick(ids []string, fallback string) string {
	if len(ids) == 0 {
		return fallback
	}
	return ids[g.rng.IntN(len(ids))]
}

// futureID is an id a driver will (or may) use later, derived from one it used.
func (g *commandGen) futureID() string {
	ag := &g.attack
	switch g.rng.IntN(7) {
	case 6: // a withdrawal's hold or its resolutions to come
		return payoutTransferID(g.tf.AppliedIndex()+uint64(1+g.rng.IntN(5)), []string{"", ":post", ":void", ":pay"}[g.rng.IntN(4)])
	case 0:
		d := g.pick(ag.pendings, "")
		if strings.HasPrefix(d, "d:") {
			return []string{"p", "v", "r"}[g.rng.IntN(3)] + d[1:] // its post, void or reversal
		}
		return paymentResolutionID(g.pick(ag.pendings, paymentTransferID(1)), g.rng.IntN(2) == 0)
	case 1:
		return hashTransferID([]string{"lni", "lnin"}[g.rng.IntN(2)], hashOf(g.rng.IntN(12))) // settlements to come
	case 2:
		return paymentTransferID(g.tf.AppliedIndex() + uint64(1+g.rng.IntN(5))) // the next holds
	case 3:
		return unattributedTransferID(lightningNodes[g.rng.IntN(3)], uint64(g.rng.IntN(20)))
	case 4:
		return openingTransferID(lightningNodes[g.rng.IntN(3)])
	default:
		return g.pick(ag.transfers, hashTransferID("lni", hashOf(0))) // one already used
	}
}

// systemAccount is an account a driver owns or will create.
func (g *commandGen) systemAccount() string {
	known := []string{DepositClearingAccount, LightningCapitalAccount, LightningUnattributedAccount, LightningNodeAccount("ln-c"),
		PayoutClearingAccount, PayoutFeeIncomeAccount, PayoutFeeExpenseAccount, WalletCapitalAccount, WalletAccount("hot")}
	return g.pick(append(known, g.attack.accounts...), DepositClearingAccount)
}

// attackTransfer is a client transfer aimed at what a driver owns.
func (g *commandGen) attackTransfer() *bankdv1.Transfer {
	ag := &g.attack
	switch g.rng.IntN(5) {
	case 0: // post a driver's pending transfer: credit a deposit early, pay out a hold
		return &bankdv1.Transfer{Id: g.id("atk"), PostPending: true, PendingId: g.pick(ag.pendings, paymentTransferID(1)), Amount: int64(g.rng.IntN(2)) * 10}
	case 1: // void one: spend a held payment twice
		return &bankdv1.Transfer{Id: g.id("atk"), VoidPending: true, PendingId: g.pick(ag.pendings, paymentTransferID(1))}
	case 2: // take an id a driver uses or will use
		t := xfer(g.futureID(), g.account(), g.account(), int64(1+g.rng.IntN(1000)))
		t.Pending = g.rng.IntN(2) == 0
		return t
	case 3: // move money out of a driver's account
		return xfer(g.id("atk"), g.systemAccount(), g.account(), int64(1+g.rng.IntN(100_000)))
	default: // or into one
		return xfer(g.id("atk"), g.account(), g.systemAccount(), int64(1+g.rng.IntN(100_000)))
	}
}

// attackStep proposes one attack. Every one must be refused; checkOwnershipInvariants checks
// independently that none got through.
func (g *commandGen) attackStep() {
	ag := &g.attack
	if ag.results == nil {
		ag.results = map[string]int{}
	}
	g.harvest()
	var typ bankdv1.CommandType
	var body proto.Message
	switch g.rng.IntN(7) {
	case 6:
		// A withdrawal from an account that must not pay: a driver's, or one that may go
		// negative.
		typ = bankdv1.CommandType_COMMAND_TYPE_PAYOUT_REQUEST
		payer := g.systemAccount()
		if g.rng.IntN(2) == 0 {
			payer = "loose"
		}
		body = &bankdv1.PayoutRequestCommand{
			Request: &bankdv1.RequestPayoutRequest{Id: g.id("atk-wd"), AccountId: payer, Address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
				AmountSat: int64(1_000 + g.rng.IntN(500_000)), Queue: "q"},
			Policy: &bankdv1.PayoutQueuePolicy{FeeSat: int64(g.rng.IntN(1000))},
		}
	case 0, 1, 2:
		typ = bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS
		n := 1 + g.rng.IntN(3)
		ts := make([]*bankdv1.Transfer, n)
		for i := range ts {
			ts[i] = g.attackTransfer()
			if g.rng.IntN(3) == 0 {
				ts[i] = g.transfer() // hidden among ordinary ones, or linked to them
			}
			ts[i].Linked = i < n-1 && g.rng.IntN(2) == 0
		}
		ts[n-1].Linked = false
		body = &bankdv1.CreateTransfersRequest{Transfers: ts}
	case 3:
		typ = bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT
		body = &bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: g.systemAccount(), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}}
	case 4:
		typ = bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS
		body = &bankdv1.NewDepositAddressRequest{AccountId: g.systemAccount(), RequestId: g.id("atk-addr")}
	default:
		// The pool driver proposes these for a client's CreateInvoice and PayInvoice.
		if g.rng.IntN(2) == 0 {
			typ = bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED
			_, hash := preimageAndHash(12 + g.rng.IntN(4))
			body = &bankdv1.LnInvoiceCreated{Invoice: &bankdv1.LnInvoice{
				Hash: hash, AccountId: g.systemAccount(), NodeId: lightningNodes[g.rng.IntN(2)], AmountSat: 1_000,
				PaymentRequest: "lnbcrt" + hash, ExpiresUnixMs: g.tf.nowMs + 3_600_000, AddIndex: 1, RequestId: g.id("atk-inv"),
			}}
		} else {
			typ = bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START
			payer := g.systemAccount()
			if g.rng.IntN(2) == 0 {
				payer = "loose" // a customer account that may go negative: it must not pay
			}
			_, hash := preimageAndHash(g.rng.IntN(12))
			body = &bankdv1.LnPaymentStart{Id: g.id("atk-pay"), AccountId: payer, Hash: hash, PaymentRequest: "lnbcrt" + hash,
				Destination: "03" + hash, AmountSat: int64(1 + g.rng.IntN(500_000)), FeeReserveSat: 10, NodeId: lightningNodes[g.rng.IntN(2)]}
		}
	}
	res := g.tf.do(typ, body, nil)
	switch r := res.(type) {
	case *Error:
		ag.results["refused "+r.Code.String()]++
	case *bankdv1.CreateTransfersResponse:
		for i, tr := range r.Results {
			t := body.(*bankdv1.CreateTransfersRequest).Transfers[i]
			if !strings.HasPrefix(t.Id, "atk") && !isAttack(t) {
				continue // an ordinary transfer hidden in the batch
			}
			if tr.Code == bankdv1.ResultCode_RESULT_CODE_OK {
				ag.results["applied"]++
			} else {
				ag.results["refused "+tr.Code.String()]++
			}
		}
	default:
		ag.results["applied"]++
	}
}

// isAttack reports whether a transfer names anything of a driver's.
func isAttack(t *bankdv1.Transfer) bool {
	for _, id := range []string{t.Id, t.PendingId} {
		if _, ok := SystemTransferOwner(id); ok {
			return true
		}
	}
	for _, id := range []string{t.DebitAccountId, t.CreditAccountId} {
		if _, ok := SystemAccountOwner(id); ok {
			return true
		}
	}
	return false
}

// checkOwnershipInvariants checks what the drivers own was touched by no one else: every
// account and transfer has an owner, an id of a driver's form belongs to that driver and any
// other to a client, a pending transfer was posted or voided only by its owner, and every
// transfer moved money only through accounts its owner may use.
func checkOwnershipInvariants(t failer, tf *testFSM) {
	t.Helper()
	accounts := map[string]*bankdv1.Account{}
	err := tf.scan([]byte{tagAccount}, []byte{tagAccount + 1}, func(_, v []byte) (bool, error) {
		acc := &bankdv1.Account{}
		if err := proto.Unmarshal(v, acc); err != nil {
			return false, err
		}
		accounts[acc.Id] = acc
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The forms the adjustments added bind clients only from the first adjustment on
	// (adjustment.go): a client's record under one from before then is its own.
	gatedSince, err := tf.readUint64(keyAdjustments)
	if err != nil {
		t.Fatal(err)
	}
	takenBefore := func(gated []systemIDForm, id string, index uint64, owner bankdv1.Owner) bool {
		_, isGated := systemOwner(nil, gated, id)
		return isGated && owner == asClient && (gatedSince == 0 || index < gatedSince)
	}
	for id, acc := range accounts {
		if want := ownerByForm(SystemAccountOwner(id)); acc.Owner != want && !takenBefore(gatedAccountIDs, id, acc.CreatedIndex, acc.Owner) {
			t.Fatalf("account %q is owned by %v, its id says %v", id, acc.Owner, want)
		}
	}
	transfers := map[string]*bankdv1.Transfer{}
	err = tf.scan([]byte{tagTransfer}, []byte{tagTransfer + 1}, func(_, v []byte) (bool, error) {
		tr, _, err := decodeStoredTransfer(v)
		transfers[tr.GetId()] = tr
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, tr := range transfers {
		if want := ownerByForm(SystemTransferOwner(id)); tr.Owner != want && !takenBefore(gatedTransferIDs, id, tr.Index, tr.Owner) {
			t.Fatalf("transfer %q is owned by %v, its id says %v", id, tr.Owner, want)
		}
		if tr.PostPending || tr.VoidPending {
			if p := transfers[tr.PendingId]; p == nil || p.Owner != tr.Owner {
				t.Fatalf("transfer %q of %v resolved pending transfer %q of %v", id, tr.Owner, tr.PendingId, p.GetOwner())
			}
		}
		for _, accID := range []string{tr.DebitAccountId, tr.CreditAccountId} {
			if acc := accounts[accID]; acc == nil || !mayUseAccount(tr.Owner, acc.Owner) {
				t.Fatalf("transfer %q of %v moved money through account %q of %v", id, tr.Owner, accID, acc.GetOwner())
			}
		}
	}
}

func ownerByForm(o bankdv1.Owner, system bool) bankdv1.Owner {
	if system {
		return o
	}
	return asClient
}

func (g *attackGen) String() string { return fmt.Sprint(g.results) }
