package coldvault

import (
	"crypto/sha256"

	"github.com/btcsuite/btcd/txscript"
)

// p2wsh is the output script paying a witness script.
func p2wsh(witnessScript []byte) ([]byte, error) {
	h := sha256.Sum256(witnessScript)
	return txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(h[:]).Script()
}
