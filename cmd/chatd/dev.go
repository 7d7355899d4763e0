package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/switchboard-chat/switchboard/pkg/config"
)

// dev runs the three-host development cluster (see pkg/dev).
func dev(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) error {
	return errors.New("chatd dev is not available yet")
}
