// Package signer is the hot wallet's signer: it holds the wallet's BIP 32 master private key,
// checks a payout batch planned by bankd against everything the key's owner can verify on its
// own, and only then signs the batch's PSBT. cmd/signerd runs it against a cluster's API; this
// package never touches the network, never logs and never writes anything but its own ledger.
//
// # Trust
//
// bankd plans and commits a batch before anyone signs it, but a signer trusts nothing it is
// given: a compromised node, API token or planner must not be able to make it sign a
// transaction that pays anyone the batch's withdrawals do not name. Check refuses a batch
// unless
//
//   - its PSBT decodes and its unsigned transaction is exactly the batch record (version 2,
//     locktime 0, sequences 0xfffffffd, the record's outpoints and outputs in order, its txid);
//   - every input spends a P2WPKH output of this wallet: its BIP 32 derivation names the
//     master's fingerprint and a path origin/branch/index of the descriptor, the key derived
//     there from the master is the one named, and the spent script is the descriptor's;
//   - at most one output, the last, is change, paying the descriptor's change branch;
//   - every other output pays a withdrawal that bankd reports BATCHED in this batch, to the
//     withdrawal's script and for its amount, and no withdrawal is paid twice;
//   - the fee (inputs minus outputs) is the record's, above zero, and within the signer's caps
//     (absolute, and per virtual byte);
//   - the day's outflow (the withdrawals signed for since midnight UTC) stays within the daily
//     limit, counted in a Ledger file that survives restarts.
//
// Input values come from the PSBT's witness UTXOs, which the planner supplies. BIP 143 makes
// every signature commit to the value of the input it signs, so a wrong value makes the
// transaction invalid rather than more expensive; the one attack left (two PSBTs of the same
// transaction, each lying about a different input, whose signatures are combined) is closed by
// the Ledger, which refuses to sign a transaction again with other input values.
//
// # What it must never do
//
// The master key and every key derived from it stay in this process: no error message, log
// field or file written by this package holds them (the ledger lists batch ids, txids and
// amounts only). Sign verifies every signature it makes with txscript's script engine before
// it returns a PSBT, and records the batch's outflow in the ledger before it hands one out, so a
// crash can make it count a batch it never delivered but never deliver one it did not count.
//
// Only wpkh(...) hot wallets with a <0;1> receive/change multipath are supported.
package signer
