package chainwatch

import (
	"errors"
	"fmt"
	"time"

	"github.com/bankd/bankd/chainwatch/chainrpc"
	"github.com/bankd/bankd/fsm"
	"github.com/bankd/bankd/node"
)

// Config is what the watcher follows and how; cluster.hcl's chain block (see ConfigFromNode).
type Config struct {
	// Network is the cluster's chain network ("mainnet", "testnet", "signet", "regtest"). The
	// node must be on it, and so must the state machine's wallets.
	Network string
	// RPC says how to reach the node.
	RPC chainrpc.Config
	// FinalDepth is stamped on every connected block: confirmations at which a transaction is
	// final and its deposits are credited (1-1000).
	FinalDepth uint32
	// KeepHashes is stamped on every connected block: block hashes the state machine keeps
	// below the tip, the deepest reorg that can be followed.
	KeepHashes uint32
	// StartHeight is the first block followed on an empty chain.
	StartHeight uint32
	// PollInterval is the pause between looks at the node while nothing is left to do.
	PollInterval time.Duration
	// Mempool turns mempool polling (pending deposits, evictions) on.
	Mempool bool
}

// ConfigFromNode returns the watcher's configuration from cluster.hcl's chain block.
func ConfigFromNode(c node.ChainConfig) Config {
	return Config{
		Network: c.Network,
		RPC: chainrpc.Config{
			Host:       c.RPCHost,
			User:       c.RPCUser,
			Pass:       c.RPCPass,
			CertPEM:    c.RPCCert,
			DisableTLS: !c.RPCTLS,
		},
		FinalDepth:   c.FinalDepth,
		KeepHashes:   c.KeepHashes,
		StartHeight:  c.StartHeight,
		PollInterval: c.PollInterval,
		Mempool:      c.Mempool,
	}
}

func (c Config) validate() error {
	if _, ok := fsm.ChainParams(c.Network); !ok {
		return fmt.Errorf("network must be one of %s, got %q", fsm.ChainNetworkNames, c.Network)
	}
	if c.FinalDepth < 1 || c.FinalDepth > fsm.MaxFinalDepth {
		return fmt.Errorf("final depth must be 1-%d, got %d", fsm.MaxFinalDepth, c.FinalDepth)
	}
	if c.KeepHashes < c.FinalDepth || c.KeepHashes > fsm.MaxKeepHashes {
		return fmt.Errorf("keep hashes must be between the final depth (%d) and %d, got %d", c.FinalDepth, fsm.MaxKeepHashes, c.KeepHashes)
	}
	if c.PollInterval <= 0 {
		return errors.New("poll interval must be positive")
	}
	return nil
}
