package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

// Wallets are watch-only output descriptors. Every script a wallet may be paid on is recorded in
// the script table (keys.go): the addresses handed out to accounts and, per branch, a look-ahead
// window of gap_limit scripts past the highest index handed out or seen paid, so that the chain
// follower recognises a payment to any of them. Deriving a script is a BIP 32 child derivation
// per key (about 0.1 ms), so the work one command does is bounded: see MaxWalletDerivations.

// Limits of wallets and deposit addresses.
const (
	// DefaultGapLimit is the look-ahead window of a wallet created with gap_limit 0.
	DefaultGapLimit = 20
	// MaxGapLimit bounds a wallet's look-ahead window.
	MaxGapLimit = 10_000
	// MaxWalletDerivations bounds gap_limit × branches × keys per script: the key derivations
	// one command may need to fill or extend a look-ahead window (about 2.5 s of apply time at
	// 0.12 ms each), so that no command stalls the state machine for long.
	MaxWalletDerivations = 20_000
	// MaxDescriptorLen bounds a descriptor's text (a 20-key multisig of xpubs with origins and
	// multipath steps is about 3,000 bytes).
	MaxDescriptorLen = 8192
	// MaxAddressLen bounds an address given to LookupAddress (bech32 addresses are at most 90).
	MaxAddressLen = 128
)

// Branches of a wallet: the first multipath value (or the only descriptor) and the second.
const (
	branchReceive = 0
	branchChange  = 1
)

// chainNetworks maps the network names of cluster.hcl and the API to their parameters. Test
// networks share tpub keys and testnet3's address formats are those of testnet4.
var chainNetworks = map[string]*chaincfg.Params{
	"mainnet": &chaincfg.MainNetParams,
	"testnet": &chaincfg.TestNet3Params,
	"signet":  &chaincfg.SigNetParams,
	"regtest": &chaincfg.RegressionNetParams,
}

// ChainNetworkNames are the chain networks a cluster can be for.
const ChainNetworkNames = "mainnet, testnet, signet, regtest"

// ChainParams returns the parameters of a chain network name (one of ChainNetworkNames).
func ChainParams(network string) (*chaincfg.Params, bool) {
	p, ok := chainNetworks[network]
	return p, ok
}

// walletSpec is a validated CreateWallet request: the wallet's definition in normal form and
// the descriptor of each branch.
type walletSpec struct {
	wallet   *bankdv1.Wallet
	branches []*descriptor.Descriptor
}

// ValidateCreateWallet checks a CreateWallet request on its own: ids, kind, network, gap
// limit, and the descriptor, which is parsed for the network. It does not know the cluster's
// network nor the scripts other wallets watch; apply checks those.
func ValidateCreateWallet(req *bankdv1.CreateWalletRequest) *Error {
	_, err := parseWalletRequest(req)
	return err
}

func parseWalletRequest(req *bankdv1.CreateWalletRequest) (*walletSpec, *Error) {
	if err := checkID("wallet_id", req.GetWalletId()); err != nil {
		return nil, err
	}
	kind := req.GetKind()
	if _, ok := bankdv1.WalletKind_name[int32(kind)]; !ok || kind == bankdv1.WalletKind_WALLET_KIND_UNSPECIFIED {
		return nil, invalid("kind: must be one of hot, cold, deposit")
	}
	net, ok := ChainParams(req.GetNetwork())
	if !ok {
		return nil, invalid("network: must be one of %s, got %q", ChainNetworkNames, truncate(req.GetNetwork()))
	}
	gap := req.GetGapLimit()
	if gap == 0 {
		gap = DefaultGapLimit
	}
	if gap > MaxGapLimit {
		return nil, invalid("gap_limit: must be 0-%d (0 means %d), got %d", MaxGapLimit, DefaultGapLimit, req.GetGapLimit())
	}
	text := req.GetDescriptor_()
	switch {
	case text == "":
		return nil, invalid("descriptor: required")
	case len(text) > MaxDescriptorLen:
		return nil, invalid("descriptor: at most %d bytes, got %d", MaxDescriptorLen, len(text))
	}
	d, err := descriptor.Parse(text, net)
	if err != nil {
		// The descriptor package's messages start with "descriptor: " and never repeat a secret.
		return nil, invalid("%v", err)
	}
	if kind == bankdv1.WalletKind_WALLET_KIND_DEPOSIT && !d.IsRange() {
		return nil, invalid("descriptor: a DEPOSIT wallet needs a ranged descriptor, ending in /* or /<0;1>/*")
	}
	branches := d.Multipath()
	if len(branches) > 2 {
		return nil, invalid("descriptor: a wallet has a receive and a change branch, so at most two multipath values (<0;1>), got %d", len(branches))
	}
	first, err := branches[0].Expand(0)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if _, err := branches[0].Address(0, nil); err != nil {
		if errors.Is(err, descriptor.ErrNoAddress) {
			return nil, invalid("descriptor: %s() outputs have no address; use pkh, wpkh, sh, wsh or tr", d.Kind())
		}
		return nil, invalid("%v", err)
	}
	perBranch := uint64(1)
	if d.IsRange() {
		perBranch = uint64(gap)
	}
	if work := perBranch * uint64(len(branches)) * uint64(len(first.Keys)); work > MaxWalletDerivations {
		return nil, invalid("gap_limit: %d scripts on %d branch(es) of %d key(s) each need %d key derivations, more than the %d one command may do; lower gap_limit",
			perBranch, len(branches), len(first.Keys), work, MaxWalletDerivations)
	}
	w := &bankdv1.Wallet{
		Id:             req.GetWalletId(),
		Kind:           kind,
		Descriptor_:    d.String(),
		Network:        req.GetNetwork(),
		GapLimit:       gap,
		BirthdayHeight: req.GetBirthdayHeight(),
	}
	return &walletSpec{wallet: w, branches: branches}, nil
}

// ValidateNewDepositAddress checks a NewDepositAddress request on its own.
func ValidateNewDepositAddress(req *bankdv1.NewDepositAddressRequest) *Error {
	if err := checkID("account_id", req.GetAccountId()); err != nil {
		return err
	}
	if !ownershipChecksOff {
		if err := CheckClientAccountID("account_id", req.GetAccountId(), "get a deposit address for"); err != nil {
			return err
		}
	}
	if req.GetWalletId() != "" {
		if err := checkID("wallet_id", req.GetWalletId()); err != nil {
			return err
		}
	}
	return checkID("request_id", req.GetRequestId())
}

// walletState is a wallet being worked on by a command: its definition, the descriptor of each
// branch and the branches' counters, written back by save.
type walletState struct {
	wallet   *bankdv1.Wallet
	descs    []*descriptor.Descriptor
	branches []*bankdv1.WalletBranch
}

// indexLimit is the number of indexes each branch has: 2^31 for a ranged descriptor (the
// unhardened child numbers), one otherwise.
func (ws *walletState) indexLimit() uint64 {
	if ws.descs[0].IsRange() {
		return descriptor.HardenedKeyStart
	}
	return 1
}

// windowEnd is where a branch's watched range must end: next_index + gap_limit, within the
// branch's indexes.
func (ws *walletState) windowEnd(b *bankdv1.WalletBranch) uint32 {
	return uint32(min(uint64(b.NextIndex)+uint64(ws.wallet.GapLimit), ws.indexLimit()))
}

// derive returns the script table record of index i of branch b.
func (ws *walletState) derive(b, i uint32) (*bankdv1.WatchedScript, error) {
	addr, err := ws.descs[b].Address(i, nil)
	if err != nil {
		return nil, err
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, fmt.Errorf("script of %s: %w", addr, err)
	}
	return &bankdv1.WatchedScript{
		Script:   script,
		Address:  addr.EncodeAddress(),
		WalletId: ws.wallet.Id,
		Branch:   b,
		Index:    i,
	}, nil
}

// view is the wallet as the API shows it: the definition and its branches' counters.
func (ws *walletState) view() *bankdv1.Wallet {
	w := proto.Clone(ws.wallet).(*bankdv1.Wallet)
	for _, b := range ws.branches {
		w.Branches = append(w.Branches, proto.Clone(b).(*bankdv1.WalletBranch))
	}
	return w
}

func (ws *walletState) save(tx *txn) {
	tx.set(walletBranchesKey(ws.wallet.Id), encodeBranches(ws.branches))
}

func (a *applier) createWallet(tx *txn, req *bankdv1.CreateWalletRequest) (proto.Message, error) {
	spec, verr := parseWalletRequest(req)
	if verr != nil {
		return nil, verr
	}
	existing, err := loadWalletState(tx, spec.wallet.Id)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		if !proto.Equal(definitionOf(existing.wallet), spec.wallet) {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				"wallet_id: wallet %q already exists with a different definition", spec.wallet.Id)
		}
		return &bankdv1.CreateWalletResponse{Wallet: existing.view(), Replayed: true}, nil
	}
	if err := claimNetwork(tx, spec.wallet.Network); err != nil {
		return nil, err
	}

	w := spec.wallet
	w.CreatedAtUnixMs, w.CreatedIndex = a.now, a.index
	if err := putProto(tx, walletKey(w.Id), w); err != nil {
		return nil, err
	}
	ws := &walletState{wallet: w, descs: spec.branches}
	for i := range spec.branches {
		ws.branches = append(ws.branches, &bankdv1.WalletBranch{Branch: uint32(i)})
	}
	for _, b := range ws.branches {
		if err := a.watchUpTo(tx, ws, b, ws.windowEnd(b)); err != nil {
			return nil, err
		}
	}
	ws.save(tx)
	if w.Kind == bankdv1.WalletKind_WALLET_KIND_DEPOSIT {
		if err := noteDepositWallet(tx, w.Id); err != nil {
			return nil, err
		}
	}
	view := ws.view()
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_WalletCreated{WalletCreated: view}})
	return &bankdv1.CreateWalletResponse{Wallet: view}, nil
}

// definitionOf strips what the cluster sets from a stored wallet, leaving what a CreateWallet
// request defines.
func definitionOf(w *bankdv1.Wallet) *bankdv1.Wallet {
	def := proto.Clone(w).(*bankdv1.Wallet)
	def.CreatedAtUnixMs, def.CreatedIndex, def.Branches = 0, 0, nil
	return def
}

// claimNetwork makes network the cluster's chain network if it has none yet (the first
// wallet sets it), and refuses any other one after that: every script of the cluster is for
// one chain. The API fills the network from cluster.hcl, so a mismatch means cluster.hcl
// was changed after wallets existed.
func claimNetwork(tx *txn, network string) error {
	v, found, err := tx.get(keyNetwork)
	if err != nil {
		return err
	}
	if found && string(v) != network {
		return invalid("network: the cluster's chain network is %s (set by its first wallet), not %s", v, network)
	}
	if !found {
		tx.set(keyNetwork, []byte(network))
	}
	return nil
}

// noteDepositWallet keeps the default DEPOSIT wallet key: the wallet's id while it is the only
// DEPOSIT wallet, empty once there are several.
func noteDepositWallet(tx *txn, id string) error {
	_, found, err := tx.get(keyDepositDefault)
	if err != nil {
		return err
	}
	if found {
		tx.set(keyDepositDefault, []byte{})
	} else {
		tx.set(keyDepositDefault, []byte(id))
	}
	return nil
}

// watchUpTo adds the scripts of indexes [watched_end, end) of branch b to the script table.
// A script another wallet (or another index of this one) already watches is refused rather
// than overwritten: every script has exactly one owner.
func (a *applier) watchUpTo(tx *txn, ws *walletState, b *bankdv1.WalletBranch, end uint32) error {
	for i := b.WatchedEnd; i < end; i++ {
		rec, err := ws.derive(b.Branch, i)
		if err != nil {
			return invalid("wallet %q: %s index %d: %v", ws.wallet.Id, branchName(b.Branch), i, err)
		}
		key := scriptKey(rec.Script)
		other := &bankdv1.WatchedScript{}
		found, err := getProto(tx, key, other)
		if err != nil {
			return err
		}
		if found {
			b.WatchedEnd = max(b.WatchedEnd, i) // the scripts below i are written
			return refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				"descriptor: the script of %s index %d (%s) is already watched by wallet %q (%s index %d)",
				branchName(b.Branch), i, rec.Address, other.WalletId, branchName(other.Branch), other.Index)
		}
		if err := putProto(tx, key, rec); err != nil {
			return err
		}
		a.watched = append(a.watched, rec.Script)
	}
	if end > b.WatchedEnd {
		b.WatchedEnd = end
	}
	return nil
}

func branchName(b uint32) string {
	switch b {
	case branchReceive:
		return "receive"
	case branchChange:
		return "change"
	default:
		return fmt.Sprintf("branch %d", b)
	}
}

// markScriptUsed records that the chain paid a watched script. When the script lies at or past
// its branch's next index, the branch's next index moves past it and the look-ahead window
// [0, next_index + gap_limit) grows with it, so the wallet keeps gap_limit unused scripts
// watched beyond every used one; NewDepositAddress never hands out an index at or below a used
// one. A script below the next index changes nothing. Chain-state commands call it for every
// watched script an output they record pays.
func (a *applier) markScriptUsed(tx *txn, rec *bankdv1.WatchedScript) error {
	ws, err := loadWalletState(tx, rec.WalletId)
	if err != nil {
		return err
	}
	if ws == nil || int(rec.Branch) >= len(ws.branches) {
		return fmt.Errorf("script table names wallet %q branch %d, which does not exist", rec.WalletId, rec.Branch)
	}
	b := ws.branches[rec.Branch]
	if rec.Index < b.NextIndex {
		return nil
	}
	b.NextIndex = rec.Index + 1
	if err := a.watchUpTo(tx, ws, b, ws.windowEnd(b)); err != nil {
		refusal, ok := asRefusal(err)
		if !ok {
			return err
		}
		// Another wallet watches a script this window must grow into (an operator gave two
		// wallets overlapping keys). The chain command still applies, since refusing it would
		// stop the chain from being followed for good; the window stops short of that script,
		// and the problem says where.
		a.problem("wallet "+ws.wallet.Id, "look-ahead window stops at %s index %d: %s", branchName(b.Branch), b.WatchedEnd, refusal.Message)
	}
	ws.save(tx)
	return nil
}

func (a *applier) newDepositAddress(tx *txn, req *bankdv1.NewDepositAddressRequest) (proto.Message, error) {
	if err := ValidateNewDepositAddress(req); err != nil {
		return nil, err
	}
	prev := &bankdv1.DepositAddress{}
	found, err := getProto(tx, depositRequestKey(req.RequestId), prev)
	if err != nil {
		return nil, err
	}
	if found {
		if prev.AccountId != req.AccountId || (req.WalletId != "" && req.WalletId != prev.WalletId) {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				"request_id: %q was already used for account %q and wallet %q", req.RequestId, prev.AccountId, prev.WalletId)
		}
		return &bankdv1.NewDepositAddressResponse{Address: prev, Replayed: true}, nil
	}
	if err := checkDepositAccount(tx, req.AccountId); err != nil {
		return nil, err
	}
	walletID := req.WalletId
	if walletID == "" {
		if walletID, err = defaultDepositWallet(tx); err != nil {
			return nil, err
		}
	}
	ws, err := loadWalletState(tx, walletID)
	if err != nil {
		return nil, err
	}
	if ws == nil {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "wallet_id: no wallet %q", walletID)
	}
	if ws.wallet.Kind != bankdv1.WalletKind_WALLET_KIND_DEPOSIT {
		return nil, invalid("wallet_id: wallet %q is a %s wallet; deposit addresses come from DEPOSIT wallets", walletID, walletKindName(ws.wallet.Kind))
	}

	b := ws.branches[branchReceive]
	if uint64(b.NextIndex) >= ws.indexLimit() {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_OVERFLOW, "wallet %q: every receive index has been handed out", walletID)
	}
	index := b.NextIndex
	b.NextIndex++
	if err := a.watchUpTo(tx, ws, b, ws.windowEnd(b)); err != nil {
		return nil, err
	}
	ws.save(tx)

	derived, err := ws.derive(branchReceive, index)
	if err != nil {
		return nil, invalid("wallet %q: receive index %d: %v", walletID, index, err)
	}
	key := scriptKey(derived.Script)
	rec := &bankdv1.WatchedScript{}
	found, err = getProto(tx, key, rec)
	if err != nil {
		return nil, err
	}
	if !found || rec.WalletId != walletID || rec.Branch != branchReceive || rec.Index != index || rec.AccountId != "" {
		return nil, fmt.Errorf("wallet %q receive index %d: script table holds %v, want an unassigned record of this index", walletID, index, rec)
	}
	rec.AccountId = req.AccountId
	if err := putProto(tx, key, rec); err != nil {
		return nil, err
	}
	dep := &bankdv1.DepositAddress{
		Address:         rec.Address,
		Script:          rec.Script,
		AccountId:       req.AccountId,
		WalletId:        walletID,
		Branch:          branchReceive,
		Index:           index,
		RequestId:       req.RequestId,
		CreatedAtUnixMs: a.now,
		CreatedIndex:    a.index,
	}
	if err := putProto(tx, depositAddressKey(req.AccountId, a.index, a.nextSeq()), dep); err != nil {
		return nil, err
	}
	if err := putProto(tx, depositRequestKey(req.RequestId), dep); err != nil {
		return nil, err
	}
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_DepositAddressCreated{DepositAddressCreated: dep}})
	return &bankdv1.NewDepositAddressResponse{Address: dep}, nil
}

// checkDepositAccount refuses an account a deposit address cannot belong to. A deposit credits
// the customer's balance, which is a LIABILITY of the bank, in satoshis; the bank's own accounts
// (the asset side included) receive on-chain money through its hot and cold wallets instead.
func checkDepositAccount(tx *txn, id string) error {
	acc, found := tx.account(id)
	if !found {
		return refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "account_id: no account %q", id)
	}
	if acc.Kind != bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY {
		return invalid("account_id: account %q is %s; deposit addresses belong to LIABILITY accounts (customer balances)",
			id, strings.TrimPrefix(acc.Kind.String(), "ACCOUNT_KIND_"))
	}
	if acc.Currency != "BTC" {
		return invalid("account_id: account %q is in %s; deposits are in BTC", id, acc.Currency)
	}
	if o := accountOwner(acc); o != bankdv1.Owner_OWNER_CLIENT && !ownershipChecksOff {
		return invalid("account_id: %q is an account of %s; deposit addresses belong to customer accounts", id, ownerPhrase(o))
	}
	return nil
}

func defaultDepositWallet(tx *txn) (string, error) {
	v, found, err := tx.get(keyDepositDefault)
	if err != nil {
		return "", err
	}
	switch {
	case !found:
		return "", refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "wallet_id: the cluster has no DEPOSIT wallet")
	case len(v) == 0:
		return "", invalid("wallet_id: required: the cluster has several DEPOSIT wallets")
	}
	return string(v), nil
}

func walletKindName(k bankdv1.WalletKind) string {
	switch k {
	case bankdv1.WalletKind_WALLET_KIND_HOT:
		return "HOT"
	case bankdv1.WalletKind_WALLET_KIND_COLD:
		return "COLD"
	case bankdv1.WalletKind_WALLET_KIND_DEPOSIT:
		return "DEPOSIT"
	default:
		return k.String()
	}
}

// loadWalletState loads a wallet with its counters and parses its descriptor; it returns nil
// if there is no such wallet. A stored wallet that does not parse means a broken store.
func loadWalletState(tx *txn, id string) (*walletState, error) {
	w := &bankdv1.Wallet{}
	found, err := getProto(tx, walletKey(id), w)
	if err != nil || !found {
		return nil, err
	}
	v, found, err := tx.get(walletBranchesKey(id))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("wallet %q has no branch counters", id)
	}
	branches, err := decodeBranches(v)
	if err != nil {
		return nil, fmt.Errorf("wallet %q: %w", id, err)
	}
	ws, err := parseStoredWallet(w, branches)
	if err != nil {
		return nil, err
	}
	return ws, nil
}

func parseStoredWallet(w *bankdv1.Wallet, branches []*bankdv1.WalletBranch) (*walletState, error) {
	net, ok := ChainParams(w.Network)
	if !ok {
		return nil, fmt.Errorf("stored wallet %q has unknown network %q", w.Id, w.Network)
	}
	d, err := descriptor.Parse(w.Descriptor_, net)
	if err != nil {
		return nil, fmt.Errorf("stored wallet %q: %w", w.Id, err)
	}
	descs := d.Multipath()
	if len(descs) != len(branches) {
		return nil, fmt.Errorf("stored wallet %q has %d branches and %d counters", w.Id, len(descs), len(branches))
	}
	return &walletState{wallet: w, descs: descs, branches: branches}, nil
}

// Branch counters are stored as uint32 next_index, uint32 watched_end per branch.
func encodeBranches(bs []*bankdv1.WalletBranch) []byte {
	out := make([]byte, 0, 8*len(bs))
	for _, b := range bs {
		out = binary.BigEndian.AppendUint32(out, b.NextIndex)
		out = binary.BigEndian.AppendUint32(out, b.WatchedEnd)
	}
	return out
}

func decodeBranches(v []byte) ([]*bankdv1.WalletBranch, error) {
	if len(v) == 0 || len(v)%8 != 0 {
		return nil, fmt.Errorf("corrupt branch counters: %d bytes", len(v))
	}
	out := make([]*bankdv1.WalletBranch, 0, len(v)/8)
	for i := 0; i < len(v); i += 8 {
		out = append(out, &bankdv1.WalletBranch{
			Branch:     uint32(i / 8),
			NextIndex:  binary.BigEndian.Uint32(v[i:]),
			WatchedEnd: binary.BigEndian.Uint32(v[i+4:]),
		})
	}
	return out, nil
}
