package logging

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// Watermill adapts logger for Watermill. Watermill's Info lines (a
// subscriber starting, a handler added) are Debug here, so that the lines
// of the flow itself stand out at Info.
//
// A line below the logger's level costs nothing: Watermill's own adapter
// builds every line's attributes before the level check, and its
// subscribers and forwarder write a Trace line for each message.
func Watermill(logger *slog.Logger) watermill.LoggerAdapter {
	return leveledAdapter{
		LoggerAdapter: watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{
			slog.LevelInfo: slog.LevelDebug,
		}),
		logger: logger,
	}
}

type leveledAdapter struct {
	watermill.LoggerAdapter
	logger *slog.Logger // for Enabled: the adapter's handler, without its fields
}

func (a leveledAdapter) enabled(level slog.Level) bool {
	return a.logger.Enabled(context.Background(), level)
}

func (a leveledAdapter) Info(msg string, fields watermill.LogFields) {
	if a.enabled(slog.LevelDebug) {
		a.LoggerAdapter.Info(msg, fields)
	}
}

func (a leveledAdapter) Debug(msg string, fields watermill.LogFields) {
	if a.enabled(slog.LevelDebug) {
		a.LoggerAdapter.Debug(msg, fields)
	}
}

func (a leveledAdapter) Trace(msg string, fields watermill.LogFields) {
	if a.enabled(watermill.LevelTrace) {
		a.LoggerAdapter.Trace(msg, fields)
	}
}

func (a leveledAdapter) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return leveledAdapter{LoggerAdapter: a.LoggerAdapter.With(fields), logger: a.logger}
}
