package ndt7

import (
	"errors"

	"github.com/gorilla/websocket"

	"github.com/neubot/neubot/schemas"
)

// Failure is the word a record uses for what ended a subtest early (see
// schemas.FailureOf): a WebSocket closed with anything but a normal or
// going-away close is closed_abnormally; "" for a normal end.
func Failure(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway {
			return ""
		}
		return schemas.FailureClosedAbnormally
	}
	return schemas.FailureOf(err)
}
