package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/principal"
	"github.com/bankd/bankd/node"
)

// scope is one thing a token may do; a token holds a set of them (scopeSet).
type scope uint8

const (
	scopeRead scope = 1 << iota
	scopeWrite
	scopeOperator
	scopeAdmin
	scopeSigner
)

type scopeSet uint8

func (s scopeSet) has(sc scope) bool { return s&scopeSet(sc) != 0 }

// scopeNames maps cluster.hcl's scope names to what each one grants: write and operator also
// read; admin grants everything.
var scopeNames = map[string]scopeSet{
	node.ScopeRead:     scopeSet(scopeRead),
	node.ScopeSigner:   scopeSet(scopeRead | scopeSigner),
	node.ScopeWrite:    scopeSet(scopeRead | scopeWrite),
	node.ScopeOperator: scopeSet(scopeRead | scopeOperator),
	node.ScopeAdmin:    scopeSet(scopeRead | scopeWrite | scopeOperator | scopeAdmin | scopeSigner),
}

func (sc scope) String() string {
	switch sc {
	case scopeRead:
		return node.ScopeRead
	case scopeWrite:
		return node.ScopeWrite
	case scopeOperator:
		return node.ScopeOperator
	case scopeAdmin:
		return node.ScopeAdmin
	case scopeSigner:
		return node.ScopeSigner
	}
	return fmt.Sprintf("scope(%d)", uint8(sc))
}

// procedureScopes is the scope every bankd procedure needs. A procedure missing here is refused
// to everyone (a test checks that every procedure of every service is listed).
var procedureScopes = map[string]scope{
	bankdv1connect.LedgerServiceGetAccountProcedure:         scopeRead,
	bankdv1connect.LedgerServiceListAccountsProcedure:       scopeRead,
	bankdv1connect.LedgerServiceGetTransferProcedure:        scopeRead,
	bankdv1connect.LedgerServiceListAccountHistoryProcedure: scopeRead,
	bankdv1connect.LedgerServiceCreateAccountProcedure:      scopeWrite,
	bankdv1connect.LedgerServiceCreateTransferProcedure:     scopeWrite,
	bankdv1connect.LedgerServiceCreateTransfersProcedure:    scopeWrite,
	bankdv1connect.LedgerServiceCreateAccountsProcedure:     scopeWrite,
	// Adjustments book money that moved outside bankd into the drivers' own accounts: an
	// operator's (or admin's) decision, never a client service's.
	bankdv1connect.LedgerServiceBookAdjustmentProcedure:  scopeOperator,
	bankdv1connect.LedgerServiceGetAdjustmentProcedure:   scopeRead,
	bankdv1connect.LedgerServiceListAdjustmentsProcedure: scopeRead,

	bankdv1connect.LockServiceGetProcedure:     scopeRead,
	bankdv1connect.LockServiceAcquireProcedure: scopeWrite,
	bankdv1connect.LockServiceRenewProcedure:   scopeWrite,
	bankdv1connect.LockServiceReleaseProcedure: scopeWrite,

	bankdv1connect.EventServiceWatchEventsProcedure: scopeRead,

	bankdv1connect.ClusterServiceStatusProcedure:             scopeRead,
	bankdv1connect.ClusterServiceMembersProcedure:            scopeRead,
	bankdv1connect.ClusterServiceLeaderProcedure:             scopeRead,
	bankdv1connect.ClusterServiceStateHashProcedure:          scopeOperator,
	bankdv1connect.ClusterServiceListProblemsProcedure:       scopeOperator,
	bankdv1connect.ClusterServiceTransferLeadershipProcedure: scopeAdmin,
	bankdv1connect.ClusterServiceRemoveNodeProcedure:         scopeAdmin,
	bankdv1connect.ClusterServiceCompactProcedure:            scopeAdmin,
	bankdv1connect.ClusterServiceSaveSnapshotProcedure:       scopeAdmin,
	bankdv1connect.ClusterServiceRestoreSnapshotProcedure:    scopeAdmin,

	bankdv1connect.WalletServiceGetWalletProcedure:            scopeRead,
	bankdv1connect.WalletServiceListWalletsProcedure:          scopeRead,
	bankdv1connect.WalletServiceListDepositAddressesProcedure: scopeRead,
	bankdv1connect.WalletServiceLookupAddressProcedure:        scopeRead,
	bankdv1connect.WalletServiceNewDepositAddressProcedure:    scopeWrite,
	bankdv1connect.WalletServiceCreateWalletProcedure:         scopeOperator,

	bankdv1connect.ChainServiceGetChainStatusProcedure: scopeRead,
	bankdv1connect.ChainServiceGetChainTxProcedure:     scopeRead,
	bankdv1connect.ChainServiceListUtxosProcedure:      scopeRead,
	bankdv1connect.ChainServiceListDepositsProcedure:   scopeRead,
	bankdv1connect.ChainServiceRescanProcedure:         scopeOperator,

	bankdv1connect.LightningServiceListNodesProcedure:         scopeRead,
	bankdv1connect.LightningServiceGetInvoiceProcedure:        scopeRead,
	bankdv1connect.LightningServiceGetPaymentProcedure:        scopeRead,
	bankdv1connect.LightningServiceCreateInvoiceProcedure:     scopeWrite,
	bankdv1connect.LightningServicePayInvoiceProcedure:        scopeWrite,
	bankdv1connect.LightningServicePayInternalProcedure:       scopeWrite,
	bankdv1connect.LightningServiceAddNodeProcedure:           scopeOperator,
	bankdv1connect.LightningServiceDrainNodeProcedure:         scopeOperator,
	bankdv1connect.LightningServiceReconcileProcedure:         scopeOperator,
	bankdv1connect.LightningServiceGetChannelOpenProcedure:    scopeRead,
	bankdv1connect.LightningServiceOpenChannelProcedure:       scopeOperator,
	bankdv1connect.LightningServiceCancelChannelOpenProcedure: scopeOperator,
	// A lost node's payments are settled or released on evidence only an admin can weigh (a
	// payee's word releases a customer's hold; a wrong one costs the bank the amount), and
	// declaring a node lost ends the pool's own tracking of them: admin, never operator.
	bankdv1connect.LightningServiceDeclareNodeLostProcedure:    scopeAdmin,
	bankdv1connect.LightningServiceResolveLostPaymentProcedure: scopeAdmin,
	bankdv1connect.LightningServiceListUnresolvedProcedure:     scopeRead,

	bankdv1connect.VaultServiceProposeProcedure:         scopeOperator,
	bankdv1connect.VaultServiceGetProcedure:             scopeRead,
	bankdv1connect.VaultServiceListProcedure:            scopeRead,
	bankdv1connect.VaultServiceApproveProcedure:         scopeOperator,
	bankdv1connect.VaultServiceRejectProcedure:          scopeOperator,
	bankdv1connect.VaultServiceAbandonProcedure:         scopeOperator,
	bankdv1connect.VaultServiceSubmitSignatureProcedure: scopeOperator,

	bankdv1connect.PayoutServiceGetPayoutProcedure:        scopeRead,
	bankdv1connect.PayoutServiceListPayoutsProcedure:      scopeRead,
	bankdv1connect.PayoutServiceGetBatchProcedure:         scopeRead,
	bankdv1connect.PayoutServiceListBatchesProcedure:      scopeRead,
	bankdv1connect.PayoutServiceRequestPayoutProcedure:    scopeWrite,
	bankdv1connect.PayoutServiceCancelPayoutProcedure:     scopeWrite,
	bankdv1connect.PayoutServiceApprovePayoutProcedure:    scopeOperator,
	bankdv1connect.PayoutServiceRejectPayoutProcedure:     scopeOperator,
	bankdv1connect.PayoutServiceAbandonBatchProcedure:     scopeOperator,
	bankdv1connect.PayoutServiceReconcileWalletsProcedure: scopeOperator,
	bankdv1connect.PayoutServiceFlushQueueProcedure:       scopeOperator,
	bankdv1connect.PayoutServiceSubmitSignatureProcedure:  scopeSigner,
}

// maxTokenLen bounds what we hash from an Authorization header.
const maxTokenLen = 4096

// identity is an authenticated caller: its token's name and what the token may do.
type identity struct {
	name   string
	scopes scopeSet
}

// tokenEntry is one configured token, known by the SHA-256 of its secret.
type tokenEntry struct {
	sum [sha256.Size]byte
	identity
}

// authenticator knows the configured tokens by their SHA-256, so that comparisons take the
// same time whatever the length or content of the presented token. The set is replaced as a
// whole when the tokens are reloaded (SIGHUP); calls in flight keep the set they started with.
type authenticator struct {
	tokens atomic.Pointer[[]tokenEntry]
}

func newAuthenticator(tokens []node.TokenConfig) (*authenticator, error) {
	a := &authenticator{}
	if err := a.set(tokens); err != nil {
		return nil, err
	}
	return a, nil
}

// set replaces the token set.
func (a *authenticator) set(tokens []node.TokenConfig) error {
	entries := make([]tokenEntry, 0, len(tokens))
	for _, t := range tokens {
		e := tokenEntry{sum: t.SHA256, identity: identity{name: t.Name}}
		for _, name := range t.Scopes {
			grants, ok := scopeNames[name]
			if !ok {
				return fmt.Errorf("token %q: unknown scope %q", t.Name, name)
			}
			e.scopes |= grants
		}
		entries = append(entries, e)
	}
	a.tokens.Store(&entries)
	return nil
}

func (a *authenticator) count() int { return len(*a.tokens.Load()) }

// identify compares token against every configured token, without stopping at the first
// match, so the time taken says nothing about which token (if any) matched.
func (a *authenticator) identify(token string) (identity, bool) {
	sum := sha256.Sum256([]byte(token))
	var found identity
	matched := 0
	for _, e := range *a.tokens.Load() {
		eq := subtle.ConstantTimeCompare(sum[:], e.sum[:])
		if eq == 1 {
			found = e.identity
		}
		matched |= eq
	}
	return found, matched == 1
}

var (
	errMissingToken = errors.New("missing bearer token: send Authorization: Bearer <token>")
	errInvalidToken = errors.New("invalid bearer token")
)

// authorize decides whether the Authorization header may call procedure and returns the
// caller's identity, or a *connect.Error with Unauthenticated or PermissionDenied.
func (a *authenticator) authorize(procedure string, header http.Header) (identity, *connect.Error) {
	token, ok := bearerToken(header.Get("Authorization"))
	if !ok {
		return identity{}, connect.NewError(connect.CodeUnauthenticated, errMissingToken)
	}
	id, ok := a.identify(token)
	if !ok {
		return identity{}, connect.NewError(connect.CodeUnauthenticated, errInvalidToken)
	}
	need, known := procedureScopes[procedure]
	switch {
	case !known:
		return identity{}, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s is not open to any token", procedure))
	case !id.scopes.has(need):
		return identity{}, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s needs a token with the %s scope; token %q does not have it", procedure, need, id.name))
	}
	return id, nil
}

// gate is the single place where API calls are authenticated. It runs before the request
// message is read, so an unauthenticated caller cannot make the server decode 16 MiB. The
// caller's name travels on in the context (principal), to the limits and to node.Apply.
func (a *authenticator) gate(log *slog.Logger, m *metrics) connect.RequestGateFunc {
	return func(ctx context.Context, spec connect.Spec, peer connect.Peer, header http.Header) (context.Context, error) {
		id, err := a.authorize(spec.Procedure, header)
		if err != nil {
			m.authRefused.WithLabelValues(spec.Procedure, codeLabel(err)).Inc()
			log.Warn("api call refused", "procedure", spec.Procedure, "peer", peer.Addr,
				"code", err.Code().String(), "reason", err.Message())
			return ctx, err
		}
		return principal.With(ctx, id.name), nil
	}
}

// bearerToken extracts the token of an "Authorization: Bearer <token>" header.
func bearerToken(v string) (string, bool) {
	const prefix = "bearer "
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", false
	}
	token := strings.TrimSpace(v[len(prefix):])
	if token == "" || len(token) > maxTokenLen {
		return "", false
	}
	return token, true
}
