package config

// Push configures the XEP-0357 notifications the bouncer publishes for its
// local clients while they are away.
type Push struct {
	// IncludeBody puts the message body into the notification's summary
	// form. Off by default, as in Prosody's mod_cloud_notify: the app server
	// is run by a third party.
	IncludeBody bool `toml:"include_body"`
	// MinInterval is the least time between two notifications to the same
	// registration; messages in between are counted and summed up in one
	// trailing notification. Zero means the default, 10s.
	MinInterval Duration `toml:"min_interval"`
}
