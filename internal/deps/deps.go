package deps
import (
 _ "github.com/spf13/cobra"
 _ "github.com/stretchr/testify/require"
 _ "github.com/x448/float16"
 _ "github.com/nlpodyssey/gopickle/pickle"
 _ "golang.org/x/sys/unix"
 _ "golang.org/x/sys/cpu"
 _ "golang.org/x/sync/errgroup"
 _ "github.com/zeebo/xxh3"
 _ "github.com/dlclark/regexp2"
 _ "google.golang.org/protobuf/encoding/protowire"
 _ "github.com/schollz/progressbar/v3"
)
