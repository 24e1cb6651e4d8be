package redis_test

import (
	"fmt"

	"github.com/duplexws/duplex/gateway/broker/redis"
)

func ExampleParseURL() {
	for _, u := range []string{
		"redis://127.0.0.1:6379/2",
		"rediss://app:s3cret@redis.internal:6380",
		"redis://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
		"redis://10.0.0.1:7000?cluster=true&prefix=chat",
	} {
		o, err := redis.ParseURL(u)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%v cluster=%v db=%d\n", o, o.Cluster, o.DB)
	}
	// Output:
	// redis://127.0.0.1:6379/2 cluster=false db=2
	// rediss://app:xxxxx@redis.internal:6380 cluster=false db=0
	// redis://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000 cluster=true db=0
	// redis://10.0.0.1:7000?cluster=true&prefix=chat cluster=true db=0
}
