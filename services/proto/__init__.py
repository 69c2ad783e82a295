"""Generated gRPC code for protos/ (run `make proto`); nothing here is written by hand."""
