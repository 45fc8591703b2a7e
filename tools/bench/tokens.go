package main

import (
	"fmt"

	"github.com/orderstream/orderstream/tools/internal/credentials"
)

// customersPerGroup is how many customers the orders of one load spread
// over: the customer of an order is <group>-<n mod customersPerGroup>.
const customersPerGroup = 1000

// customersOf returns the customer ids of group, each with its token. A
// load asks before it starts, so that no request it times waits for a
// signature.
func customersOf(creds *credentials.Credentials, group string) ([]customer, error) {
	out := make([]customer, customersPerGroup)
	for i := range out {
		id := fmt.Sprintf("%s-%d", group, i)
		tok, err := creds.Customer(id)
		if err != nil {
			return nil, err
		}
		out[i] = customer{id: id, authorization: "Bearer " + tok}
	}
	return out, nil
}

// customer is one customer of a load: its id and Authorization header.
type customer struct{ id, authorization string }
