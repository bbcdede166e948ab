module github.com/gpt-load/gpt-load

go 1.26.0

require (
	github.com/joho/godotenv v1.5.1
	github.com/sirupsen/logrus v1.10.2
	golang.org/x/net v0.62.0
)

require (
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
