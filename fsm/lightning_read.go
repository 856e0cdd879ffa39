package fsm

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Reads of the Lightning state (lightning.go), for the pool driver and the API.

// LndNodes returns every registered pool node, retired ones included, in id order.
func (f *FSM) LndNodes() ([]*bankdv1.LndNode, error) {
	var out []*bankdv1.LndNode
	err := f.scan([]byte{tagLndNode}, []byte{tagLndNode + 1}, func(k, v []byte) (bool, error) {
		n := &bankdv1.LndNode{}
		if err := proto.Unmarshal(v, n); err != nil {
			return false, fmt.Errorf("corrupt pool node %q: %w", k[1:], err)
		}
		out = append(out, n)
		return true, nil
	})
	return out, err
}

// LndNode returns one pool node, or ErrNotFound.
func (f *FSM) LndNode(id string) (*bankdv1.LndNode, error) {
	n := &bankdv1.LndNode{}
	return n, f.get(lndNodeKey(id), n)
}

// Invoice returns the invoice of a payment hash, or ErrNotFound.
func (f *FSM) Invoice(hash string) (*bankdv1.LnInvoice, error) {
	inv := &bankdv1.LnInvoice{}
	return inv, f.get(invoiceKey(hash), inv)
}

// InvoiceByRequest returns the invoice a CreateInvoice request_id made, or ErrNotFound.
func (f *FSM) InvoiceByRequest(requestID string) (*bankdv1.LnInvoice, error) {
	hash, err := f.value(invoiceRequestKey(requestID))
	if err != nil {
		return nil, err
	}
	return f.Invoice(string(hash))
}

// value returns the raw value at key, or ErrNotFound.
func (f *FSM) value(key []byte) ([]byte, error) {
	var out []byte
	err := f.view(func(r pebble.Reader) error {
		v, ok, err := readValue(r, key)
		if err == nil && !ok {
			err = ErrNotFound
		}
		out = v
		return err
	})
	return out, err
}

// Payment returns a payment by id, or ErrNotFound.
func (f *FSM) Payment(id string) (*bankdv1.LnPayment, error) {
	p := &bankdv1.LnPayment{}
	return p, f.get(paymentKey(id), p)
}

// PaymentOfHash returns the payment IN_FLIGHT or SUCCEEDED for a payment hash, or ErrNotFound.
func (f *FSM) PaymentOfHash(hash string) (*bankdv1.LnPayment, error) {
	id, err := f.value(paymentHashKey(hash))
	if err != nil {
		return nil, err
	}
	return f.Payment(string(id))
}

// OpenInvoices returns up to max OPEN invoices of a node, in hash order after the hash after.
func (f *FSM) OpenInvoices(nodeID, after string, max int) ([]*bankdv1.LnInvoice, error) {
	return indexed(f, openInvoicePrefix(nodeID), after, max, f.Invoice)
}

// InFlightPayments returns up to max IN_FLIGHT payments of a node, in id order after the id
// after.
func (f *FSM) InFlightPayments(nodeID, after string, max int) ([]*bankdv1.LnPayment, error) {
	return indexed(f, inFlightPrefix(nodeID), after, max, f.Payment)
}

// InvoicesToCancel returns up to max internally settled invoices still open on their nodes.
func (f *FSM) InvoicesToCancel(max int) ([]*bankdv1.LnInvoice, error) {
	return indexed(f, []byte{tagInvoiceCancel}, "", max, f.Invoice)
}

// indexed follows an index whose keys are prefix + the id of a record load reads: up to max
// records whose ids sort after after.
func indexed[T any](f *FSM, prefix []byte, after string, max int, load func(string) (T, error)) ([]T, error) {
	lower := prefix
	if after != "" {
		lower = append(append(append([]byte(nil), prefix...), after...), 0)
	}
	var ids []string
	err := f.scan(lower, prefixEnd(prefix), func(k, _ []byte) (bool, error) {
		if len(ids) == max {
			return false, nil
		}
		ids = append(ids, string(k[len(prefix):]))
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(ids))
	for _, id := range ids {
		rec, err := load(id)
		if err != nil {
			return nil, fmt.Errorf("index %q names %q: %w", prefix, id, err)
		}
		out = append(out, rec)
	}
	return out, nil
}
