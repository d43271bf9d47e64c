package lockmgr

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
)

// TestPrepares: lockmgr prepares its statements on SQLite and on MySQL
// without interpolateParams, and nowhere else.
func TestPrepares(t *testing.T) {
	const my = "root@tcp(127.0.0.1:3306)/test?parseTime=true"
	assert.True(t, prepares(sqlite.Open("file::memory:"), "sqlite"))
	assert.False(t, prepares(postgres.Open("postgres://u@h/db"), "postgres"))
	assert.True(t, prepares(mysql.Open(my), "mysql"))
	assert.False(t, prepares(mysql.Open(my+"&interpolateParams=true"), "mysql"), "the user chose client-side interpolation")
	assert.True(t, prepares(mysql.New(mysql.Config{}), "mysql"), "no DSN to read: prepare")
	assert.True(t, prepares(&mysql.Dialector{}, "mysql"), "a nil Config does not panic")
}
