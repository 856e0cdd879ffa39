package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

// The cold vault: moves between the hot wallet and a multisig COLD wallet, each proposed (by
// the coldvault process or an operator), approved by another identity, and carried out by the
// payout pipeline as a batch in the reserved queue "vault":
//
//	VAULT_PROPOSE   PROPOSED: who, how much, which way, why
//	VAULT_DECIDE    APPROVED by an identity other than the proposer's, or REJECTED
//	PAYOUT_PLAN     SIGNING: hot -> cold, the payout driver plans output 0 to the cold wallet's
//	                next receive index, change to the hot wallet
//	PAYOUT_SIGNED   BROADCAST; then CONFIRMED and FINAL with the chain
//	VAULT_ABANDON   ABANDONED, while its transaction is not signed (its batch abandoned)
//
// At final depth the books move wallet:<from> -> wallet:<to> by the amount (pb:<index>:vault),
// the fee is an expense. One proposal per cold wallet is active (PROPOSED to CONFIRMED) at a
// time, so that coldvault's retries and a second operator cannot stack moves.

// VaultQueue is the queue of vault batches. No configured queue may take the name.
const VaultQueue = "vault"

// MaxVaultReasonLen bounds a proposal's reason.
const MaxVaultReasonLen = 1024

// Vault tables:
//
//	V <index>          -> VaultProposal, by the Raft index of its proposal
//	Y <id>             -> sha256(request) || index: the proposer's id
//	U <cold wallet id> -> index of the wallet's active proposal (PROPOSED to CONFIRMED)
const (
	tagVault       = 'V'
	tagVaultID     = 'Y'
	tagVaultActive = 'U'
)

func vaultKey(index uint64) []byte        { return binary.BigEndian.AppendUint64([]byte{tagVault}, index) }
func vaultIDKey(id string) []byte         { return tagged(tagVaultID, id) }
func vaultActiveKey(wallet string) []byte { return tagged(tagVaultActive, wallet) }

func vaultStateName(s bankdv1.VaultProposalState) string {
	return strings.TrimPrefix(s.String(), "VAULT_PROPOSAL_STATE_")
}

// saveVault writes a proposal; one that has ended (FINAL, REJECTED, ABANDONED) frees its cold
// wallet's active slot.
func (a *applier) saveVault(tx *txn, p *bankdv1.VaultProposal) error {
	if p.State > bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED {
		tx.delete(vaultActiveKey(p.ColdWalletId))
	}
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_VaultProposal{VaultProposal: proto.Clone(p).(*bankdv1.VaultProposal)}})
	return putProto(tx, vaultKey(p.Index), p)
}

// ValidateProposeVault checks a proposal on its own.
func ValidateProposeVault(req *bankdv1.ProposeVaultTransferRequest) *Error {
	if err := checkID("id", req.GetId()); err != nil {
		return err
	}
	switch req.GetDirection() {
	case bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD, bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT:
	default:
		return invalid("direction: TO_COLD or TO_HOT, got %s", req.GetDirection())
	}
	if err := checkID("cold_wallet_id", req.GetColdWalletId()); err != nil {
		return err
	}
	if err := checkSat("amount_sat", req.GetAmountSat(), false); err != nil {
		return err
	}
	return checkText("reason", req.GetReason(), MaxVaultReasonLen, true)
}

// CheckColdDescriptor refuses a COLD wallet the vault cannot use: its descriptor must be a
// wsh(multi) or wsh(sortedmulti) of extended keys.
func CheckColdDescriptor(field, desc, network string) *Error {
	params, ok := ChainParams(network)
	if !ok {
		return invalid("%s: unknown network %q", field, network)
	}
	d, err := descriptor.Parse(desc, params)
	if err != nil {
		return invalid("%s: %v", field, err)
	}
	if !strings.HasPrefix(d.String(), "wsh(multi(") && !strings.HasPrefix(d.String(), "wsh(sortedmulti(") {
		return invalid("%s: a cold vault is a wsh(sortedmulti(M, ...)) multisig, got %s", field, truncate(d.String()))
	}
	// Every cosigner's key origin, so that each hardware signer finds its key in a PSBT (and
	// can be registered the same way by every coordinator).
	for i, k := range d.ExtendedKeys() {
		if len(k.Origin.Path) == 0 {
			return invalid("%s: cosigner key %d has no key origin [fingerprint/48'/...]; hardware signers need it to find their key", field, i+1)
		}
	}
	return nil
}

func loadVaultByID(tx *txn, id string) (*bankdv1.VaultProposal, []byte, error) {
	v, found, err := tx.get(vaultIDKey(id))
	if err != nil || !found {
		return nil, nil, err
	}
	if len(v) != 40 {
		return nil, nil, fmt.Errorf("corrupt vault proposal id record %q", id)
	}
	p := &bankdv1.VaultProposal{}
	if ok, err := getProto(tx, vaultKey(binary.BigEndian.Uint64(v[32:])), p); err != nil {
		return nil, nil, err
	} else if !ok {
		return nil, nil, fmt.Errorf("vault proposal id %q names a missing record", id)
	}
	return p, v[:32], nil
}

func mustLoadVault(tx *txn, field, id string) (*bankdv1.VaultProposal, error) {
	p, _, err := loadVaultByID(tx, id)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "%s: no vault proposal %q", field, truncate(id))
	}
	return p, nil
}

func (a *applier) vaultPropose(tx *txn, cmd *bankdv1.VaultProposeCommand) (proto.Message, error) {
	req := cmd.GetRequest()
	if err := ValidateProposeVault(req); err != nil {
		return nil, err
	}
	if err := checkID("hot_wallet_id", cmd.GetHotWalletId()); err != nil {
		return nil, err
	}
	b, err := marshal.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("marshal vault proposal: %w", err)
	}
	sum := sha256.Sum256(b)
	prev, prevSum, err := loadVaultByID(tx, req.Id)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if !bytes.Equal(prevSum, sum[:]) {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "id: %q was already used for another vault proposal", req.Id)
		}
		return &bankdv1.ProposeVaultTransferResponse{Proposal: prev, Replayed: true}, nil
	}
	cold, err := loadWalletState(tx, req.ColdWalletId)
	if err != nil {
		return nil, err
	}
	switch {
	case cold == nil:
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "cold_wallet_id: no wallet %q", req.ColdWalletId)
	case cold.wallet.Kind != bankdv1.WalletKind_WALLET_KIND_COLD:
		return nil, invalid("cold_wallet_id: wallet %q is a %s wallet, not COLD", req.ColdWalletId, walletKindName(cold.wallet.Kind))
	}
	if err := CheckColdDescriptor("cold_wallet_id", cold.wallet.Descriptor_, cold.wallet.Network); err != nil {
		return nil, err
	}
	hot, err := loadWalletState(tx, cmd.HotWalletId)
	if err != nil {
		return nil, err
	}
	if err := checkHotWallet(hot, cmd.HotWalletId); err != nil {
		return nil, err
	}
	if v, found, err := tx.get(vaultActiveKey(req.ColdWalletId)); err != nil {
		return nil, err
	} else if found {
		busy := &bankdv1.VaultProposal{}
		if _, err := getProto(tx, vaultKey(binary.BigEndian.Uint64(v)), busy); err != nil {
			return nil, err
		}
		return nil, payoutConflict("cold_wallet_id: proposal %q for wallet %q is %s; one move at a time", busy.Id, req.ColdWalletId, vaultStateName(busy.State))
	}
	p := &bankdv1.VaultProposal{
		Id: req.Id, Direction: req.Direction, HotWalletId: cmd.HotWalletId, ColdWalletId: req.ColdWalletId, AmountSat: req.AmountSat,
		State: bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED, Reason: req.Reason, ProposedBy: a.principal, ProposedUnixMs: a.now, Index: a.index,
	}
	tx.set(vaultIDKey(p.Id), append(sum[:], encodeUint64(p.Index)...))
	tx.set(vaultActiveKey(p.ColdWalletId), encodeUint64(p.Index))
	return &bankdv1.ProposeVaultTransferResponse{Proposal: p}, a.saveVault(tx, p)
}

func (a *applier) vaultDecide(tx *txn, req *bankdv1.DecideVaultProposalRequest) (proto.Message, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.GetReason(), MaxPayoutReasonLen, !req.GetApprove()); err != nil {
		return nil, err
	}
	p, err := mustLoadVault(tx, "id", req.Id)
	if err != nil {
		return nil, err
	}
	switch {
	case p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED:
		return nil, payoutConflict("id: vault proposal %q is %s; only a PROPOSED one is decided", p.Id, vaultStateName(p.State))
	case a.principal == "" || a.principal == p.ProposedBy:
		return nil, payoutConflict("id: vault proposal %q was proposed by %q; another identity decides it", p.Id, p.ProposedBy)
	}
	p.DecidedBy, p.DecidedUnixMs = a.principal, a.now
	if req.Approve {
		p.State = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_APPROVED
	} else {
		p.State, p.EndReason, p.ResolvedUnixMs = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_REJECTED, req.Reason, a.now
	}
	return &bankdv1.DecideVaultProposalResponse{Proposal: p}, a.saveVault(tx, p)
}

func (a *applier) vaultAbandon(tx *txn, req *bankdv1.AbandonVaultProposalRequest) (proto.Message, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.GetReason(), MaxPayoutReasonLen, true); err != nil {
		return nil, err
	}
	p, err := mustLoadVault(tx, "id", req.Id)
	if err != nil {
		return nil, err
	}
	switch p.State {
	case bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_ABANDONED:
		return &bankdv1.AbandonVaultProposalResponse{Proposal: p}, nil
	case bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED, bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_APPROVED:
	case bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_SIGNING:
		b, err := loadBatch(tx, "batch", p.BatchId)
		if err != nil {
			return nil, err
		}
		if b.State == bankdv1.BatchState_BATCH_STATE_PLANNED {
			// The proposal goes with its batch (followVault).
			if err := a.abandonBatch(tx, b, req.Reason); err != nil {
				return nil, err
			}
			p, err = mustLoadVault(tx, "id", req.Id)
			return &bankdv1.AbandonVaultProposalResponse{Proposal: p}, err
		}
		fallthrough
	default:
		return nil, payoutConflict("id: vault proposal %q is %s; its transaction is signed and may confirm", p.Id, vaultStateName(p.State))
	}
	p.State, p.EndReason, p.ResolvedUnixMs = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_ABANDONED, req.Reason, a.now
	return &bankdv1.AbandonVaultProposalResponse{Proposal: p}, a.saveVault(tx, p)
}

// spendsCold reports whether a plan spends the cold vault: a cold -> hot move.
func spendsCold(tx *txn, req *bankdv1.PayoutPlan) (bool, error) {
	if req.VaultProposalId == "" {
		return false, nil
	}
	p, _, err := loadVaultByID(tx, req.VaultProposalId)
	return p != nil && p.Direction == bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT, err
}

// checkColdWallet refuses a wallet a cold -> hot move cannot spend: a COLD wsh multisig with a
// receive and a change branch.
func checkColdWallet(ws *walletState, id string) *Error {
	switch {
	case ws == nil:
		return refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "wallet_id: no wallet %q", id)
	case ws.wallet.Kind != bankdv1.WalletKind_WALLET_KIND_COLD:
		return invalid("wallet_id: wallet %q is a %s wallet, not COLD", id, walletKindName(ws.wallet.Kind))
	case len(ws.branches) != 2:
		return invalid("wallet_id: wallet %q has no change branch (its descriptor needs /<0;1>/*)", id)
	}
	return CheckColdDescriptor("wallet_id", ws.wallet.Descriptor_, ws.wallet.Network)
}

// inputWitnessBytes is the witness size of one of the wallet's inputs: p2wpkh, or its wsh
// multisig with M signatures.
func (ws *walletState) inputWitnessBytes() (int, error) {
	if !strings.HasPrefix(ws.wallet.Descriptor_, "wsh(") {
		return p2wpkhWitnessBytes, nil
	}
	out, err := ws.descs[0].Expand(0)
	if err != nil {
		return 0, fmt.Errorf("wallet %q: %w", ws.wallet.Id, err)
	}
	return MultisigWitnessBytes(out.Threshold(), out.WitnessScript), nil
}

// multisigM is the number of signatures a wsh multisig wallet's inputs need (0 for any other).
func (ws *walletState) multisigM() int {
	out, err := ws.descs[0].Expand(0)
	if err != nil {
		return 0
	}
	return out.Threshold()
}

// planVault checks a vault plan's proposal and returns it with output 0 and the wallet that
// output pays, whose index the plan takes: hot -> cold pays the cold wallet's next receive
// index; cold -> hot the hot wallet's next change index.
func planVault(tx *txn, req *bankdv1.PayoutPlan) (*bankdv1.VaultProposal, *bankdv1.BatchOutput, *walletState, error) {
	p, err := mustLoadVault(tx, "vault_proposal_id", req.VaultProposalId)
	if err != nil {
		return nil, nil, nil, err
	}
	from, to, branch := p.HotWalletId, p.ColdWalletId, uint32(0)
	if p.Direction == bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT {
		from, to, branch = p.ColdWalletId, p.HotWalletId, branchChange
	}
	switch {
	case p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_APPROVED:
		return nil, nil, nil, payoutConflict("vault_proposal_id: proposal %q is %s, not APPROVED", p.Id, vaultStateName(p.State))
	case req.WalletId != from:
		return nil, nil, nil, invalid("wallet_id: proposal %q moves coins out of %q, not %q", p.Id, from, req.WalletId)
	}
	dest, err := loadWalletState(tx, to)
	if err != nil {
		return nil, nil, nil, err
	}
	if dest == nil || len(dest.branches) <= int(branch) {
		return nil, nil, nil, fmt.Errorf("vault proposal %q names wallet %q, which does not exist or has no branch %d", p.Id, to, branch)
	}
	next := dest.branches[branch].NextIndex
	rec, err := dest.derive(branch, next)
	if err != nil {
		return nil, nil, nil, invalid("wallet %q: %s index %d: %v", dest.wallet.Id, branchName(branch), next, err)
	}
	out := &bankdv1.BatchOutput{Vout: 0, ValueSat: p.AmountSat, Script: rec.Script, Address: rec.Address, VaultIndex: next}
	return p, out, dest, nil
}

// vaultPlanned moves a proposal to SIGNING with its batch and takes the index of the
// destination wallet the batch pays (output 0's VaultIndex).
func (a *applier) vaultPlanned(tx *txn, p *bankdv1.VaultProposal, dest *walletState, b *bankdv1.PayoutBatch) error {
	b.VaultWalletId = dest.wallet.Id
	branch := uint32(0)
	if p.Direction == bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT {
		branch = branchChange
	}
	br := dest.branches[branch]
	br.NextIndex = b.Outputs[0].VaultIndex + 1
	if err := a.watchUpTo(tx, dest, br, dest.windowEnd(br)); err != nil {
		return err
	}
	dest.save(tx)
	p.State, p.BatchId, p.Txid = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_SIGNING, b.Id, b.Txid
	return a.saveVault(tx, p)
}

// followVault moves a batch's proposal along with the batch.
func (a *applier) followVault(tx *txn, b *bankdv1.PayoutBatch) error {
	if b.VaultProposalId == "" {
		return nil
	}
	p, err := mustLoadVault(tx, "batch", b.VaultProposalId)
	if err != nil {
		return err
	}
	want := p.State
	switch b.State {
	case bankdv1.BatchState_BATCH_STATE_SIGNED:
		want = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_BROADCAST
	case bankdv1.BatchState_BATCH_STATE_CONFIRMED:
		want = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED
	case bankdv1.BatchState_BATCH_STATE_FINAL:
		want = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_FINAL
		p.ResolvedUnixMs = a.now
	case bankdv1.BatchState_BATCH_STATE_ABANDONED:
		want = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_ABANDONED
		p.EndReason, p.ResolvedUnixMs = b.AbandonReason, a.now
	}
	if want == p.State {
		return nil
	}
	p.State = want
	return a.saveVault(tx, p)
}

// finalizeVault books a final hot -> cold move: the amount leaves the hot wallet's books for the
// cold wallet's.
func (c *chainApply) finalizeVault(b *bankdv1.PayoutBatch, index uint64) error {
	subject := "batch " + b.Id
	if err := c.ensureWalletBooks(b.VaultWalletId, subject); err != nil {
		return err
	}
	return c.a.book(c.tx, subject, &bankdv1.Transfer{Id: batchTransferID(index, ":vault"), DebitAccountId: WalletAccount(b.VaultWalletId),
		CreditAccountId: WalletAccount(b.WalletId), Amount: b.Outputs[0].ValueSat, ExternalRef: b.Txid})
}

// VaultProposal returns a proposal by id, or ErrNotFound.
func (f *FSM) VaultProposal(id string) (*bankdv1.VaultProposal, error) {
	p := &bankdv1.VaultProposal{}
	err := f.view(func(r pebble.Reader) error {
		v, ok, err := readValue(r, vaultIDKey(id))
		if err != nil {
			return err
		}
		if !ok || len(v) != 40 {
			return fmt.Errorf("vault proposal %q: %w", id, ErrNotFound)
		}
		if ok, err := readProto(r, vaultKey(binary.BigEndian.Uint64(v[32:])), p); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("vault proposal %q: its id names a missing record", id)
		}
		return nil
	})
	return p, err
}

// ListVaultProposals returns proposals in proposal order after pageToken, only those in state
// when it is set.
func (f *FSM) ListVaultProposals(state bankdv1.VaultProposalState, pageToken string, pageSize int) ([]*bankdv1.VaultProposal, string, error) {
	var keep func(*bankdv1.VaultProposal) bool
	if state != 0 {
		keep = func(p *bankdv1.VaultProposal) bool { return p.State == state }
	}
	return readPage(f, []byte{tagVault}, 8, pageToken, pageSize, func() *bankdv1.VaultProposal { return &bankdv1.VaultProposal{} }, "vault proposal", keep)
}
