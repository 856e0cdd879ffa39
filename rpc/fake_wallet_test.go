package rpc

import (
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// The wallet reads of fakeState: it holds no wallets.

func (s *fakeState) Wallet(string) (*bankdv1.Wallet, error) { return nil, fsm.ErrNotFound }

func (s *fakeState) ListWallets(string, int) ([]*bankdv1.Wallet, string, error) {
	return nil, "", nil
}

func (s *fakeState) ListDepositAddresses(string, string, int) ([]*bankdv1.DepositAddress, string, error) {
	return nil, "", nil
}

func (s *fakeState) LookupAddress(string) (*bankdv1.WatchedScript, error) {
	return nil, fsm.ErrNotFound
}

func (s *fakeState) ChainStatus() (*bankdv1.GetChainStatusResponse, error) {
	return &bankdv1.GetChainStatusResponse{}, nil
}

func (s *fakeState) ChainTx(string) (*bankdv1.ChainTx, []*bankdv1.Deposit, error) {
	return nil, nil, fsm.ErrNotFound
}

func (s *fakeState) ListUtxos(string, string, int) ([]*bankdv1.Utxo, string, error) {
	return nil, "", nil
}

func (s *fakeState) ListDeposits(string, string, int) ([]*bankdv1.Deposit, string, error) {
	return nil, "", nil
}

func (s *fakeState) LndNodes() ([]*bankdv1.LndNode, error) { return nil, nil }

func (s *fakeState) Invoice(string) (*bankdv1.LnInvoice, error) { return nil, fsm.ErrNotFound }

func (s *fakeState) Payment(string) (*bankdv1.LnPayment, error) { return nil, fsm.ErrNotFound }

func (s *fakeState) Payout(string) (*bankdv1.Payout, error) { return nil, fsm.ErrNotFound }

func (s *fakeState) ListPayouts(string, bankdv1.PayoutState, string, int) ([]*bankdv1.Payout, string, error) {
	return nil, "", nil
}

func (s *fakeState) PayoutBatch(string) (*bankdv1.PayoutBatch, error) { return nil, fsm.ErrNotFound }
func (s *fakeState) ChannelOpen(string) (*bankdv1.ChannelOpen, error) { return nil, fsm.ErrNotFound }
func (s *fakeState) VaultProposal(string) (*bankdv1.VaultProposal, error) {
	return nil, fsm.ErrNotFound
}
func (s *fakeState) ListVaultProposals(bankdv1.VaultProposalState, string, int) ([]*bankdv1.VaultProposal, string, error) {
	return nil, "", nil
}

func (s *fakeState) ListPayoutBatches(bankdv1.BatchState, string, int) ([]*bankdv1.PayoutBatch, string, error) {
	return nil, "", nil
}

func (s *fakeState) WalletReconciliation() ([]*bankdv1.WalletReconciliation, error) { return nil, nil }

func (s *fakeState) Solvency() (*bankdv1.Solvency, error) { return &bankdv1.Solvency{}, nil }
