package rpc

import (
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// The fake state machine records no problems.
func (s *fakeState) ListProblems(string, int) ([]*bankdv1.Problem, string, error) {
	return nil, "", nil
}
func (s *fakeState) ProblemCount() (uint64, error) { return 0, nil }
