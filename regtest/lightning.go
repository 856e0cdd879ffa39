package regtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/lightningnetwork/lnd/lnrpc"
)

// Defaults for [LightningOptions].
const (
	// DefaultPoolSize is how many pool nodes [StartLightning] starts.
	DefaultPoolSize = 3
	// DefaultChannelCapacity is the size of each channel between the external node and a pool
	// node, in satoshis.
	DefaultChannelCapacity = 5_000_000
	// DefaultLightningTimeout bounds [StartLightningTest] and each [Lightning.AddPoolNode]
	// step that waits for lnd.
	DefaultLightningTimeout = 5 * time.Minute
)

const (
	// walletFundingSat is what every pool node's on-chain wallet receives: fees and the
	// reserve lnd keeps for bumping anchor channels.
	walletFundingSat = 10_000_000
	// openSlackSat is paid to the external node on top of each channel's capacity, for the
	// funding transaction's fee and the anchor reserve.
	openSlackSat = 1_000_000
	// openFeeRate is the funding transactions' fee rate, in sat/vB.
	openFeeRate = 2
	// announceConfs is the depth at which lnd announces a public channel to the network.
	announceConfs = 6
	// probeSat is the amount of the route queries that show the graph is complete.
	probeSat = 1000
	// graphTimeout bounds the wait for channels to become active and known to every node.
	graphTimeout = 2 * time.Minute
)

// LightningOptions configure [StartLightning]. The zero value is ready to use.
type LightningOptions struct {
	// PoolSize is how many pool nodes to start; 0 means DefaultPoolSize.
	PoolSize int
	// Dir holds one directory per node ("pool-1", ..., "external"). Empty means a new
	// temporary directory that [Lightning.Stop] removes (unless KeepDir is set). The node
	// directories must not hold nodes of an earlier chain.
	Dir string
	// KeepDir keeps a temporary Dir after Stop, e.g. to read the logs.
	KeepDir bool
	// LndPath is the lnd binary; empty means [LndPath]().
	LndPath string
	// ChannelCapacity is the size of each channel in satoshis; 0 means DefaultChannelCapacity.
	ChannelCapacity int64
	// PushSat is what the external node gives the pool node in each new channel, so that
	// both can pay at once; 0 means half the capacity.
	PushSat int64
	// StartTimeout bounds each lnd's start; 0 means DefaultLndStartTimeout.
	StartTimeout time.Duration
	// ExtraArgs are appended to every lnd's command line.
	ExtraArgs []string
	// Logger receives the harness's own log lines; nil means slog.Default().
	Logger *slog.Logger
}

// Lightning is a small Lightning network on one [Btcd]: a pool of lnd nodes (the ones a bank
// runs) and one external lnd (the rest of the world), with one public channel between the
// external node and each pool node. Every channel starts balanced (see
// LightningOptions.PushSat), so the external node can pay every pool node, every pool node
// can pay the external node, and a pool node can pay another through the external node.
type Lightning struct {
	// Pool are the pool nodes, "pool-1", "pool-2", ... AddPoolNode appends to it: do not read
	// Pool while AddPoolNode runs (PoolNodes is safe at any time).
	Pool []*Lnd
	// External is the node outside the pool, one hop from every pool node.
	External *Lnd

	btcd     *Btcd
	log      *slog.Logger
	dir      string
	ownsDir  bool
	keepDir  bool
	lndOpts  LndOptions // template: Name and Dir are set per node
	capacity int64
	push     int64

	mu       sync.Mutex // serialises AddPoolNode; guards Pool
	stopOnce sync.Once
	stopErr  error
}

// StartLightning starts opts.PoolSize pool lnd nodes and the external lnd at the same time,
// funds their wallets from btcd's faucet, opens a channel from the external node to every pool
// node, mines them deep enough to be announced, and returns once every node is synced, every
// channel is active and every node finds a route to every other. It mines btcd up to segwit
// activation first if it is not there yet. ctx bounds the whole start.
func StartLightning(ctx context.Context, btcd *Btcd, opts LightningOptions) (*Lightning, error) {
	began := time.Now()
	if opts.PoolSize <= 0 {
		opts.PoolSize = DefaultPoolSize
	}
	if opts.ChannelCapacity <= 0 {
		opts.ChannelCapacity = DefaultChannelCapacity
	}
	if opts.PushSat <= 0 {
		opts.PushSat = opts.ChannelCapacity / 2
	}
	if opts.PushSat >= opts.ChannelCapacity {
		return nil, fmt.Errorf("regtest: push of %d sat does not fit a channel of %d sat", opts.PushSat, opts.ChannelCapacity)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.LndPath == "" {
		var err error
		if opts.LndPath, err = LndPath(); err != nil {
			return nil, err
		}
	}
	dir, ownsDir := opts.Dir, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "bankd-lnd-"); err != nil {
			return nil, fmt.Errorf("regtest: lightning directory: %w", err)
		}
		ownsDir = true
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("regtest: lightning directory: %w", err)
	}
	lg := &Lightning{
		btcd:    btcd,
		log:     log,
		dir:     dir,
		ownsDir: ownsDir,
		keepDir: opts.KeepDir,
		lndOpts: LndOptions{
			LndPath:      opts.LndPath,
			StartTimeout: opts.StartTimeout,
			ExtraArgs:    opts.ExtraArgs,
			Logger:       log,
		},
		capacity: opts.ChannelCapacity,
		push:     opts.PushSat,
	}
	if err := lg.start(ctx, opts.PoolSize); err != nil {
		if stopErr := lg.Stop(context.WithoutCancel(ctx)); stopErr != nil {
			log.Warn("regtest: stopping a lightning network that failed to start", "err", stopErr)
		}
		return nil, err
	}
	log.Info("regtest: lightning ready", "pool", opts.PoolSize, "took", time.Since(began).Round(time.Millisecond))
	return lg, nil
}

func (lg *Lightning) start(ctx context.Context, poolSize int) error {
	if err := lg.ensureSegwit(ctx); err != nil {
		return err
	}
	began := time.Now()
	names := make([]string, poolSize+1)
	for i := range poolSize {
		names[i] = fmt.Sprintf("pool-%d", i+1)
	}
	names[poolSize] = "external"
	nodes := make([]*Lnd, len(names))
	err := parallel(len(names), func(i int) error {
		var err error
		nodes[i], err = StartLnd(ctx, lg.btcd, lg.nodeOptions(names[i]))
		return err
	})
	// Keep what started, so that Stop stops it if another node failed.
	for i, n := range nodes {
		if n == nil {
			continue
		}
		if i < poolSize {
			lg.Pool = append(lg.Pool, n)
		} else {
			lg.External = n
		}
	}
	if err != nil {
		return err
	}
	lg.log.Info("regtest: lnd nodes ready", "nodes", len(nodes), "took", time.Since(began).Round(time.Millisecond))
	return lg.connect(ctx, lg.Pool, lg.Pool)
}

// ensureSegwit mines up to segwit activation: lnd's funding transactions have witnesses.
func (lg *Lightning) ensureSegwit(ctx context.Context) error {
	height, err := lg.btcd.BlockCount(ctx)
	if err != nil {
		return err
	}
	if height >= SegwitHeight {
		return nil
	}
	_, err = lg.btcd.Generate(ctx, int(SegwitHeight-height))
	return err
}

func (lg *Lightning) nodeOptions(name string) LndOptions {
	opts := lg.lndOpts
	opts.Name = name
	opts.Dir = filepath.Join(lg.dir, name)
	return opts
}

// AddPoolNode starts one more pool node ("pool-N"), opens a channel from the external node to
// it like those of StartLightning, and returns it once it is active and every node finds a
// route to every other. It appends the node to Pool.
func (lg *Lightning) AddPoolNode(ctx context.Context) (*Lnd, error) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	began := time.Now()
	name := fmt.Sprintf("pool-%d", len(lg.Pool)+1)
	node, err := StartLnd(ctx, lg.btcd, lg.nodeOptions(name))
	if err != nil {
		return nil, err
	}
	pool := append(lg.poolLocked(), node)
	if err := lg.connect(ctx, []*Lnd{node}, pool); err != nil {
		if closeErr := node.Close(context.WithoutCancel(ctx)); closeErr != nil {
			lg.log.Warn("regtest: stopping a pool node that failed to join", "node", name, "err", closeErr)
		}
		return nil, fmt.Errorf("regtest: adding %s: %w", name, err)
	}
	lg.Pool = pool
	lg.log.Info("regtest: pool node added", "node", name, "took", time.Since(began).Round(time.Millisecond))
	return node, nil
}

// PoolNodes returns a copy of Pool; it is safe to call while AddPoolNode runs.
func (lg *Lightning) PoolNodes() []*Lnd {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return lg.poolLocked()
}

// poolLocked is PoolNodes for a caller that holds lg.mu.
func (lg *Lightning) poolLocked() []*Lnd {
	return append([]*Lnd(nil), lg.Pool...)
}

// connect funds the new pool nodes and the external node, opens a channel from the external
// node to each new node, mines the channels past announcement, and waits until every node of
// pool and the external node find routes to each other.
func (lg *Lightning) connect(ctx context.Context, newNodes, pool []*Lnd) error {
	began := time.Now()
	ext := lg.External
	extBefore, err := ext.confirmedBalance(ctx)
	if err != nil {
		return err
	}

	// One faucet transaction pays every wallet; one block confirms it.
	var outputs []*wire.TxOut
	extAddr, err := ext.newAddress(ctx, lnrpc.AddressType_WITNESS_PUBKEY_HASH)
	if err != nil {
		return err
	}
	extScript, err := addressScript(extAddr)
	if err != nil {
		return err
	}
	perChannel := lg.capacity + openSlackSat
	for _, n := range newNodes {
		addr, err := n.newAddress(ctx, lnrpc.AddressType_TAPROOT_PUBKEY)
		if err != nil {
			return err
		}
		script, err := addressScript(addr)
		if err != nil {
			return err
		}
		// One output per channel, so that the external node funds its channels concurrently
		// from confirmed coins.
		outputs = append(outputs,
			&wire.TxOut{Value: walletFundingSat, PkScript: script},
			&wire.TxOut{Value: perChannel, PkScript: extScript})
	}
	if _, err := lg.btcd.Send(ctx, outputs, 0); err != nil {
		return err
	}
	if _, err := lg.btcd.Generate(ctx, 1); err != nil {
		return err
	}
	extWant := extBefore + perChannel*int64(len(newNodes))
	if err := waitBalance(ctx, ext, extWant); err != nil {
		return err
	}
	for _, n := range newNodes {
		if err := waitBalance(ctx, n, walletFundingSat); err != nil {
			return err
		}
	}
	lg.log.Info("regtest: lnd wallets funded", "took", time.Since(began).Round(time.Millisecond))

	opened := time.Now()
	fundingTxids := make([]chainhash.Hash, len(newNodes))
	err = parallel(len(newNodes), func(i int) error {
		var err error
		fundingTxids[i], err = lg.openChannel(ctx, newNodes[i])
		return err
	})
	if err != nil {
		return err
	}
	for _, txid := range fundingTxids {
		err := poll(ctx, graphTimeout, "funding transaction "+txid.String()+" in the mempool", func(ctx context.Context) error {
			in, err := lg.btcd.InMempool(ctx, txid)
			if err == nil && !in {
				err = errors.New("not there yet")
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	if _, err := lg.btcd.Generate(ctx, announceConfs); err != nil {
		return err
	}
	lg.log.Info("regtest: channels opened and mined", "channels", len(newNodes), "took", time.Since(opened).Round(time.Millisecond))

	announced := time.Now()
	if err := lg.waitGraph(ctx, pool); err != nil {
		return err
	}
	lg.log.Info("regtest: channels active and announced", "took", time.Since(announced).Round(time.Millisecond))
	return nil
}

// openChannel connects the external node to n and opens a public channel to it, and returns
// the funding transaction's id once lnd has broadcast it.
func (lg *Lightning) openChannel(ctx context.Context, n *Lnd) (chainhash.Hash, error) {
	ext := lg.External
	_, err := ext.Client.ConnectPeer(ctx, &lnrpc.ConnectPeerRequest{
		Addr:    &lnrpc.LightningAddress{Pubkey: n.Pubkey, Host: n.P2PAddr},
		Timeout: 30,
	})
	if err != nil && !strings.Contains(err.Error(), "already connected") {
		return chainhash.Hash{}, fmt.Errorf("regtest: connecting %s to %s: %w", ext.Name, n.Name, err)
	}
	err = poll(ctx, graphTimeout, ext.Name+" connected to "+n.Name, func(ctx context.Context) error {
		resp, err := ext.Client.ListPeers(ctx, &lnrpc.ListPeersRequest{})
		if err != nil {
			return err
		}
		for _, p := range resp.Peers {
			if p.PubKey == n.Pubkey {
				return nil
			}
		}
		return errors.New("not a peer yet")
	})
	if err != nil {
		return chainhash.Hash{}, err
	}
	pubkey, err := hex.DecodeString(n.Pubkey)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("regtest: %s: pubkey: %w", n.Name, err)
	}
	req := &lnrpc.OpenChannelRequest{
		NodePubkey:         pubkey,
		LocalFundingAmount: lg.capacity,
		PushSat:            lg.push,
		SatPerVbyte:        openFeeRate,
	}
	// lnd refuses an open for a moment after a peer connects or a block arrives; those
	// refusals are safe to retry, anything else is not (the channel might exist).
	const attempts = 20
	for attempt := 1; ; attempt++ {
		cp, err := ext.Client.OpenChannelSync(ctx, req)
		if err == nil {
			txid, err := lnrpc.GetChanPointFundingTxid(cp)
			if err != nil {
				return chainhash.Hash{}, fmt.Errorf("regtest: channel to %s: %w", n.Name, err)
			}
			lg.log.Info("regtest: channel opened", "from", ext.Name, "to", n.Name, "funding_txid", txid,
				"capacity", lg.capacity, "push", lg.push)
			return *txid, nil
		}
		msg := err.Error()
		retry := strings.Contains(msg, "is not online") || strings.Contains(msg, "fully synced")
		if !retry || attempt == attempts {
			return chainhash.Hash{}, fmt.Errorf("regtest: opening a channel from %s to %s: %w", ext.Name, n.Name, err)
		}
		select {
		case <-ctx.Done():
			return chainhash.Hash{}, fmt.Errorf("regtest: opening a channel from %s to %s: %w (last: %v)", ext.Name, n.Name, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitGraph waits until every channel is active and every node finds a route to every other.
func (lg *Lightning) waitGraph(ctx context.Context, pool []*Lnd) error {
	if err := lg.External.WaitActiveChannels(ctx, len(pool)); err != nil {
		return err
	}
	for _, n := range pool {
		if err := n.WaitActiveChannels(ctx, 1); err != nil {
			return err
		}
	}
	nodes := append([]*Lnd{lg.External}, pool...)
	return parallel(len(nodes), func(i int) error {
		src := nodes[i]
		for _, dst := range nodes {
			if dst == src {
				continue
			}
			err := poll(ctx, graphTimeout, "a route from "+src.Name+" to "+dst.Name, func(ctx context.Context) error {
				_, err := src.Client.QueryRoutes(ctx, &lnrpc.QueryRoutesRequest{PubKey: dst.Pubkey, Amt: probeSat})
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func waitBalance(ctx context.Context, n *Lnd, want int64) error {
	return poll(ctx, graphTimeout, fmt.Sprintf("%s: confirmed balance of %d sat", n.Name, want), func(ctx context.Context) error {
		got, err := n.confirmedBalance(ctx)
		if err == nil && got < want {
			err = fmt.Errorf("%d sat confirmed", got)
		}
		return err
	})
}

func addressScript(addr string) ([]byte, error) {
	a, err := btcutil.DecodeAddress(addr, &chaincfg.RegressionNetParams)
	if err != nil {
		return nil, fmt.Errorf("regtest: lnd address %q: %w", addr, err)
	}
	return txscript.PayToAddrScript(a)
}

// Nodes returns the pool nodes and then the external node.
func (lg *Lightning) Nodes() []*Lnd {
	nodes := lg.PoolNodes()
	if lg.External != nil {
		nodes = append(nodes, lg.External)
	}
	return nodes
}

// Dir is the directory that holds the nodes' directories.
func (lg *Lightning) Dir() string { return lg.dir }

// PoolHCL describes the pool nodes for bankd's configuration: their [Lnd.HCL] blocks,
// separated by blank lines.
func (lg *Lightning) PoolHCL() string {
	var blocks []string
	for _, n := range lg.PoolNodes() {
		blocks = append(blocks, n.HCL())
	}
	return strings.Join(blocks, "\n")
}

// Stop stops every node (concurrently, see [Lnd.Stop]) and closes their connections, then
// removes a temporary directory. Stop it before its btcd: lnd does not stop on SIGTERM while
// its btcd is gone. Stop is idempotent; later calls return the first result.
func (lg *Lightning) Stop(ctx context.Context) error {
	lg.stopOnce.Do(func() {
		nodes := lg.Nodes()
		lg.stopErr = parallel(len(nodes), func(i int) error {
			return nodes[i].Close(ctx)
		})
		if lg.ownsDir && !lg.keepDir {
			if err := os.RemoveAll(lg.dir); err != nil && lg.stopErr == nil {
				lg.stopErr = fmt.Errorf("regtest: removing %s: %w", lg.dir, err)
			}
		}
	})
	return lg.stopErr
}

// parallel runs f(0), ..., f(n-1) concurrently and returns their errors joined.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
