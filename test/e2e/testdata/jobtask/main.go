// Command jobtask is a Cloud Run job task for the tests: it prints its
// task index and attempt, fails the first attempt of task $FAIL_ONCE_TASK,
// writes its PID under $PID_DIR, sleeps $SLEEP, and on SIGTERM says so and
// exits 143.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	index, attempt := os.Getenv("CLOUD_RUN_TASK_INDEX"), os.Getenv("CLOUD_RUN_TASK_ATTEMPT")
	fmt.Printf("job %s execution %s task %s/%s attempt %s\n", os.Getenv("CLOUD_RUN_JOB"), os.Getenv("CLOUD_RUN_EXECUTION"),
		index, os.Getenv("CLOUD_RUN_TASK_COUNT"), attempt)
	if dir := os.Getenv("PID_DIR"); dir != "" {
		os.WriteFile(filepath.Join(dir, "task"+index), []byte(fmt.Sprint(os.Getpid())), 0o644)
	}
	if index == os.Getenv("FAIL_ONCE_TASK") && attempt == "0" {
		fmt.Println("failing on purpose")
		os.Exit(1)
	}
	if d, err := time.ParseDuration(os.Getenv("SLEEP")); err == nil {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		select {
		case <-term:
			fmt.Println("got SIGTERM")
			os.Exit(143)
		case <-time.After(d):
		}
	}
	fmt.Println("done")
}
