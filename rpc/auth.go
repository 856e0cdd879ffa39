package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// scope is what a token may do.
type scope int

const (
	scopeNone scope = iota
	// scopeClient may call everything except the admin procedures.
	scopeClient
	// scopeAdmin may call everything.
	scopeAdmin
)

// adminProcedures need the admin scope; every other bankd procedure needs client or admin.
var adminProcedures = map[string]bool{
	bankdv1connect.ClusterServiceTransferLeadershipProcedure: true,
	bankdv1connect.ClusterServiceRemoveNodeProcedure:         true,
	bankdv1connect.ClusterServiceListProblemsProcedure:       true,
	bankdv1connect.WalletServiceCreateWalletProcedure:        true,
	bankdv1connect.ChainServiceRescanProcedure:               true,
	bankdv1connect.LightningServiceAddNodeProcedure:          true,
	bankdv1connect.LightningServiceDrainNodeProcedure:        true,
	bankdv1connect.LightningServiceReconcileProcedure:        true,
}

// maxTokenLen bounds what we hash from an Authorization header.
const maxTokenLen = 4096

// authenticator knows the configured tokens by their SHA-256, so that comparisons take the
// same time whatever the length or content of the presented token.
type authenticator struct {
	admin  [][sha256.Size]byte
	client [][sha256.Size]byte
}

func newAuthenticator(admin, client []string) *authenticator {
	a := &authenticator{}
	for _, t := range admin {
		if t != "" {
			a.admin = append(a.admin, sha256.Sum256([]byte(t)))
		}
	}
	for _, t := range client {
		if t != "" {
			a.client = append(a.client, sha256.Sum256([]byte(t)))
		}
	}
	return a
}

// scopeOf compares token against every configured token, without stopping at the first
// match, so the time taken says nothing about which token (if any) matched.
func (a *authenticator) scopeOf(token string) scope {
	sum := sha256.Sum256([]byte(token))
	var admin, client int
	for i := range a.admin {
		admin |= subtle.ConstantTimeCompare(sum[:], a.admin[i][:])
	}
	for i := range a.client {
		client |= subtle.ConstantTimeCompare(sum[:], a.client[i][:])
	}
	switch {
	case admin == 1:
		return scopeAdmin
	case client == 1:
		return scopeClient
	default:
		return scopeNone
	}
}

var (
	errMissingToken = errors.New("missing bearer token: send Authorization: Bearer <token>")
	errInvalidToken = errors.New("invalid bearer token")
	errNeedsAdmin   = errors.New("this procedure needs an admin token")
)

// authorize decides whether the Authorization header may call procedure. It returns a
// *connect.Error with Unauthenticated or PermissionDenied, or nil.
func (a *authenticator) authorize(procedure string, header http.Header) *connect.Error {
	token, ok := bearerToken(header.Get("Authorization"))
	if !ok {
		return connect.NewError(connect.CodeUnauthenticated, errMissingToken)
	}
	sc := a.scopeOf(token)
	switch {
	case sc == scopeNone:
		return connect.NewError(connect.CodeUnauthenticated, errInvalidToken)
	case adminProcedures[procedure] && sc != scopeAdmin:
		return connect.NewError(connect.CodePermissionDenied, errNeedsAdmin)
	}
	return nil
}

// gate is the single place where API calls are authenticated. It runs before the request
// message is read, so an unauthenticated caller cannot make the server decode 16 MiB.
func (a *authenticator) gate(log *slog.Logger, m *metrics) connect.RequestGateFunc {
	return func(ctx context.Context, spec connect.Spec, peer connect.Peer, header http.Header) (context.Context, error) {
		if err := a.authorize(spec.Procedure, header); err != nil {
			m.authRefused.WithLabelValues(spec.Procedure, codeLabel(err)).Inc()
			log.Warn("api call refused", "procedure", spec.Procedure, "peer", peer.Addr,
				"code", err.Code().String(), "reason", err.Message())
			return ctx, err
		}
		return ctx, nil
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
