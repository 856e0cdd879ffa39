package fsm

import bankdv1 "github.com/bankd/bankd/gen/bankdv1"

// slab hands out zeroed values of T from chunks, so that records a command makes for each
// transfer cost one allocation per chunk instead of one each. Chunks start small and double
// (slabFirstChunk to slabMaxChunk), so a command of one transfer allocates little more than it
// would without. A chunk lives as long as any value taken from it, so a slab is only for what
// a command returns or writes and then drops (results, event items), never for what stays
// resident.
type slab[T any] struct {
	free []T
	next int
}

const (
	slabFirstChunk = 8
	slabMaxChunk   = 256
)

func (s *slab[T]) new() *T {
	if len(s.free) == 0 {
		s.next = min(max(2*s.next, slabFirstChunk), slabMaxChunk)
		s.free = make([]T, s.next)
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}

// transferItem is an event item for a created transfer, allocated with its oneof wrapper.
type transferItem struct {
	item bankdv1.EventItem
	kind bankdv1.EventItem_Transfer
}

// emitTransfer adds an event item for rec, a transfer the command created or changed.
func (a *applier) emitTransfer(rec *bankdv1.Transfer) {
	ti := a.transferItems.new()
	ti.kind.Transfer = rec
	ti.item.Kind = &ti.kind
	a.emit(&ti.item)
}

// okResult is the result of a transfer the command applied.
func (a *applier) okResult(id string, rec *bankdv1.Transfer) *bankdv1.TransferResult {
	r := a.results.new()
	r.Id, r.Code, r.Transfer = id, bankdv1.ResultCode_RESULT_CODE_OK, rec
	return r
}
