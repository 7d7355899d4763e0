package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/switchboard-chat/switchboard/pkg/config"
	devpkg "github.com/switchboard-chat/switchboard/pkg/dev"
)

// dev runs the three-host development cluster with embedded stores (pkg/dev).
func dev(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) error {
	return devpkg.Run(ctx, cfg, log, stdout)
}
