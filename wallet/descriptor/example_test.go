package descriptor_test

import (
	"errors"
	"fmt"

	"github.com/bankd/bankd/wallet/descriptor"
	"github.com/btcsuite/btcd/chaincfg"
)

// A BIP 84 account descriptor with receive and change branches (BIP 389),
// using the account key of BIP 84's test vectors.
func Example() {
	d, err := descriptor.Parse("wpkh([73c5da0a/84h/0h/0h]xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V/<0;1>/*)", &chaincfg.MainNetParams)
	if err != nil {
		panic(err)
	}
	fmt.Println(d)
	branches := d.Multipath()
	receive, change := branches[0], branches[1]
	a0, _ := receive.Address(0, nil)
	c0, _ := change.Address(0, nil)
	fmt.Println("receive 0:", a0)
	fmt.Println("change 0: ", c0)
	// Output:
	// wpkh([73c5da0a/84'/0'/0']xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V/<0;1>/*)#hpg6d6w2
	// receive 0: bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu
	// change 0:  bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el
}

// Errors say what is wrong and where, and classify with errors.Is.
func ExampleParse_errors() {
	_, err := descriptor.Parse("wsh(wpkh(03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd))", &chaincfg.MainNetParams)
	fmt.Println(err)
	fmt.Println(errors.Is(err, descriptor.ErrNesting))
	// Output:
	// descriptor: expression not allowed here at position 4 ("wpkh("): wpkh() is only allowed at the top level or inside sh(), not inside wsh()
	// true
}
