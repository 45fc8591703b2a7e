package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

const (
	// The crash scenario's orders draw from skuCount SKUs: few, so that
	// orders contend for the same stock rows.
	skuCount = 20
	// Every unknownEvery-th order names a SKU without stock, which must be
	// rejected with unknown_sku.
	unknownEvery = 50
	// Every cancelEvery-th order is cancelled as soon as the api accepts
	// it, racing its own OrderPlaced through the pipeline.
	cancelEvery = 8
)

// item is one line of an order, as the API takes it.
type item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// orderSpec is one order the harness places, with the Idempotency-Key every
// attempt of it carries.
type orderSpec struct {
	Key        string `json:"-"`
	CustomerID string `json:"customer_id"`
	Items      []item `json:"items"`
	unknownSKU bool
	cancel     bool   // cancelled once accepted
	scenario   string // the scenario that places it
}

// plan is everything the load will do, drawn up front from the seed: the
// orders of every scenario and the stock set per SKU.
type plan struct {
	orders []orderSpec
	stock  map[string]int // units set through PUT /inventory
	skus   []string       // those with stock, sorted
}

// indices are the positions in p.orders of the orders of one scenario.
type indices []int

// addOrders appends n orders labelled name, each of one unit of skus[i %
// len(skus)], and stocks every SKU for all of them: these orders are all
// confirmed, so any of them still pending is a finding, not a shortage.
func (p *plan) addOrders(name string, n int, skus ...string) indices {
	var idx indices
	for i := range n {
		sku := skus[i%len(skus)]
		if _, ok := p.stock[sku]; !ok {
			p.skus = append(p.skus, sku)
		}
		p.stock[sku]++
		p.orders = append(p.orders, orderSpec{
			Key:        fmt.Sprintf("chaos-%s-%06d", name, i),
			CustomerID: fmt.Sprintf("chaos-%s-customer", name),
			Items:      []item{{SKU: sku, Quantity: 1}},
			scenario:   name,
		})
		idx = append(idx, len(p.orders)-1)
	}
	slices.Sort(p.skus)
	return idx
}

// skuNames is prefix-01, prefix-02, ... prefix-n.
func skuNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i+1)
	}
	return out
}

func newPlan() plan { return plan{stock: map[string]int{}} }

// addRandomOrders draws scenario's n orders of 1 to 3 distinct
// SKUs, 1 to 5 units each, then sets each SKU's stock to a share (30% to
// 120%) of what the orders ask of it, so that some SKUs run out and a good
// part of the orders is rejected for insufficient_stock while others never
// run short.
func (p *plan) addRandomOrders(rng *rand.Rand, scenario string, n, skuCount int) indices {
	skus := skuNames("CHAOS-SKU", skuCount)
	p.skus = append(p.skus, skus...)
	slices.Sort(p.skus)
	demand := make(map[string]int, skuCount)
	var idx indices
	for i := range n {
		o := orderSpec{
			Key:        fmt.Sprintf("chaos-%s-order-%07d", scenario, i),
			CustomerID: fmt.Sprintf("chaos-customer-%03d", rng.IntN(500)),
			scenario:   scenario,
		}
		for _, k := range rng.Perm(skuCount)[:1+rng.IntN(3)] {
			o.Items = append(o.Items, item{SKU: skus[k], Quantity: 1 + rng.IntN(5)})
		}
		if i%unknownEvery == unknownEvery/2 {
			o.Items[rng.IntN(len(o.Items))].SKU = fmt.Sprintf("CHAOS-UNKNOWN-%d", rng.IntN(3))
			o.unknownSKU = true
		}
		o.cancel = i%cancelEvery == cancelEvery/2+1
		for _, it := range o.Items {
			if !o.unknownSKU {
				demand[it.SKU] += it.Quantity
			}
		}
		p.orders = append(p.orders, o)
		idx = append(idx, len(p.orders)-1)
	}
	for _, sku := range skus {
		p.stock[sku] = int(float64(demand[sku]) * (0.3 + 0.9*rng.Float64()))
	}
	return idx
}

// sameItems reports whether got lists exactly want's items, in any order.
func sameItems(want, got []item) bool {
	if len(want) != len(got) {
		return false
	}
	key := func(items []item) []string {
		s := make([]string, len(items))
		for i, it := range items {
			s[i] = fmt.Sprintf("%s=%d", it.SKU, it.Quantity)
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(key(want), key(got))
}

func itemsString(items []item) string {
	s := make([]string, len(items))
	for i, it := range items {
		s[i] = fmt.Sprintf("%s×%d", it.SKU, it.Quantity)
	}
	return strings.Join(s, ",")
}
