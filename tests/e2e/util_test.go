package e2e

import (
	"os"
	"path/filepath"
)

func walkFiles(dir string, fn func(path string, info os.FileInfo)) error {
	return filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			fn(path, info)
		}
		return nil
	})
}
