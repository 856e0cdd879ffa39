package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// ListProblems lists what the drivers' commands met and applied around (fsm/problem.go), oldest
// first, from this node's state machine or the leader's.
func (c *clusterService) ListProblems(ctx context.Context, req *connect.Request[bankdv1.ListProblemsRequest]) (*connect.Response[bankdv1.ListProblemsResponse], error) {
	size, verr := validateListProblems(req.Msg)
	if verr != nil {
		return nil, verr
	}
	token := req.Msg.GetPageToken()
	return read(ctx, c.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListProblemsResponse, error) {
		problems, next, err := st.ListProblems(token, size)
		if err != nil {
			return nil, fmt.Errorf("list problems: %w", err)
		}
		total, err := st.ProblemCount()
		if err != nil {
			return nil, err
		}
		return &bankdv1.ListProblemsResponse{Problems: problems, NextPageToken: next, Total: total, Meta: meta}, nil
	})
}

func validateListProblems(r *bankdv1.ListProblemsRequest) (int, *connect.Error) {
	return validatePage(r)
}

// registerProblemMetric exports the state machine's problem count, read at scrape time (one
// key, no scan).
func registerProblemMetric(reg prometheus.Registerer, b backend) error {
	c := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "bankd",
		Subsystem: "fsm",
		Name:      "problems_total",
		Help:      "Problems the drivers' commands recorded in this node's state machine (bankctl problems lists them).",
	}, func() float64 {
		n, err := b.State().ProblemCount()
		if err != nil {
			return 0
		}
		return float64(n)
	})
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("rpc: register problem metric: %w", err)
	}
	return nil
}
