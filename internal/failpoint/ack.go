package failpoint

import (
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// AckTransfers is the answer AckBeforeCommit gives: every transfer of a CREATE_TRANSFERS body
// reported OK as sent, before Raft committed it or the state machine judged it. It returns nil
// for any other body.
func AckTransfers(body proto.Message) proto.Message {
	req, ok := body.(*bankdv1.CreateTransfersRequest)
	if !ok {
		return nil
	}
	res := &bankdv1.CreateTransfersResponse{}
	for _, t := range req.GetTransfers() {
		res.Results = append(res.Results, &bankdv1.TransferResult{Id: t.GetId(), Code: bankdv1.ResultCode_RESULT_CODE_OK, Transfer: t})
	}
	return res
}
