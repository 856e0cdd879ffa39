package main

import (
	"context"
	"net/url"
	"slices"
	"strconv"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/rpc/wire"
)

// preferRegion puts the nodes of -region first in a.addrs: it asks the nodes in -addr, in
// order, for the cluster's members, and moves the API addresses of the members in that region
// (those given in -addr, and the others the cluster lists, reached with the scheme of the node
// that answered) to the front. When no node answers or none is in the region the order stays
// as given: a read from another region is slower, not wrong.
func (a *app) preferRegion(ctx context.Context) {
	for _, addr := range a.addrs {
		cctx, cancel := context.WithTimeout(ctx, a.opts.timeout)
		res, err := a.clientsFor(addr).cluster.Members(cctx, connect.NewRequest(&bankdv1.MembersRequest{}))
		cancel()
		if err != nil {
			continue
		}
		a.addrs = orderByRegion(a.addrs, addr, res.Msg.GetMembers(), a.opts.region)
		return
	}
}

// orderByRegion returns addrs with the API URLs of the members in region first (members not in
// addrs are added, with the scheme of via), then the other addrs in their order.
func orderByRegion(addrs []string, via string, members []*bankdv1.Member, region string) []string {
	scheme := "https"
	if u, err := url.Parse(via); err == nil && u.Scheme != "" {
		scheme = u.Scheme
	}
	var first []string
	for _, m := range members {
		if m.GetRegion() != region || m.GetApiAddr() == "" {
			continue
		}
		u := scheme + "://" + m.GetApiAddr()
		if !slices.Contains(first, u) {
			first = append(first, u)
		}
	}
	out := first
	for _, addr := range addrs {
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	return out
}

// minIndexHeader sends Bankd-Min-Index on every call when index is not zero; nodes read it on
// stale reads only.
func minIndexHeader(index uint64) connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if index > 0 {
				req.Header().Set(wire.MinIndexHeader, strconv.FormatUint(index, 10))
			}
			return next(ctx, req)
		}
	})
}
