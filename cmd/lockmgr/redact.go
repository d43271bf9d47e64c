package main

import (
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// hidePassword replaces the password of dsnText wherever msg repeats it.
func hidePassword(msg, dsnText string) string {
	if pw := password(dsnText); len(pw) >= 3 {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
		if esc := url.QueryEscape(pw); esc != pw {
			msg = strings.ReplaceAll(msg, esc, "xxxxx")
		}
	}
	return msg
}

// password is the password a DSN carries, in any form the CLI accepts.
func password(dsnText string) string {
	if u, err := url.Parse(dsnText); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			return pw
		}
	}
	if cfg, err := mysql.ParseDSN(strings.TrimPrefix(dsnText, "mysql://")); err == nil {
		return cfg.Passwd
	}
	return ""
}
