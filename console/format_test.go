package console

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestEveryEventKindIsDescribed keeps the live feed in step with the event proto: a kind added
// to EventItem without a line in describeEvent would show as "unknown" to operators.
func TestEveryEventKindIsDescribed(t *testing.T) {
	item := &bankdv1.EventItem{}
	oneof := item.ProtoReflect().Descriptor().Oneofs().ByName("kind")
	if oneof == nil || oneof.Fields().Len() < 20 {
		t.Fatalf("EventItem's kind oneof: %v", oneof)
	}
	for i := range oneof.Fields().Len() {
		f := oneof.Fields().Get(i)
		it := &bankdv1.EventItem{}
		m := it.ProtoReflect()
		switch f.Kind() {
		case protoreflect.MessageKind:
			m.Set(f, m.NewField(f))
		case protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString("x"))
		default:
			t.Fatalf("EventItem.%s is a %s; teach this test to fill it", f.Name(), f.Kind())
		}
		if got := describeEvent(it); strings.Contains(got, "unknown kind") {
			t.Errorf("EventItem.%s has no line in describeEvent", f.Name())
		}
	}
}
