// Package principal carries the identity of an authenticated API caller (the name of its
// token in cluster.hcl) through a request's context, from the API edge that authenticated it
// to the node that stamps it on the commands it proposes, so the state machine can record who
// asked (a lock's holder, later an approver).
//
// It decides nothing: rpc/ authenticates, the state machine judges.
package principal

import "context"

type ctxKey struct{}

// MaxNameLen bounds a principal's name (a token's label in cluster.hcl).
const MaxNameLen = 64

// With returns ctx carrying the principal name.
func With(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, ctxKey{}, name)
}

// From returns the principal name ctx carries, or "" when it carries none (a leader-only
// driver acting on its own account).
func From(ctx context.Context) string {
	name, _ := ctx.Value(ctxKey{}).(string)
	return name
}
