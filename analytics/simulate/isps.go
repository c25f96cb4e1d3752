package simulate

// DefaultISPs are the ISPs of a default fleet: real access networks of
// Italy, Germany, France, the United Kingdom and the United States, each
// with a plan mix typical of its offer (legacy ADSL, VDSL/FTTC, FTTH,
// DOCSIS), a round-trip time typical of the access technology to a test
// server in the same country, and an evening rush hour. The Italian ADSL
// plans of 1, 2 and 7 Mbit/s are those whose peaks the paper that founded
// Neubot saw (Basso, Servetti, De Martin, ISCC 2011).
//
// Every ASN is in the IP database installed by scripts/setup with IPv4
// ranges registered in the ISP's country (a test checks it). The figures
// are plausible, not market data: a simulation needs a realistic shape,
// not anybody's real market share.
var DefaultISPs = []ISP{
	{
		Name: "Telecom Italia", ASN: 3269, Country: "IT", TZ: "Europe/Rome", RushHour: 0.75, Agents: 0.20,
		Plans: []Plan{
			{Name: "ADSL 1M", DownMbps: 1, UpMbps: 0.256, Weight: 0.06, RTTms: 60},
			{Name: "ADSL 2M", DownMbps: 2, UpMbps: 0.256, Weight: 0.08, RTTms: 55},
			{Name: "ADSL 7M", DownMbps: 7, UpMbps: 0.384, Weight: 0.16, RTTms: 45},
			{Name: "ADSL 20M", DownMbps: 20, UpMbps: 1, Weight: 0.20, RTTms: 38},
			{Name: "FTTC 100M", DownMbps: 100, UpMbps: 20, Weight: 0.35, RTTms: 18},
			{Name: "FTTH 1G", DownMbps: 1000, UpMbps: 300, Weight: 0.15, RTTms: 8},
		},
	},
	{
		Name: "Fastweb", ASN: 12874, Country: "IT", TZ: "Europe/Rome", RushHour: 0.8, Agents: 0.10,
		Plans: []Plan{
			{Name: "ADSL 20M", DownMbps: 20, UpMbps: 1, Weight: 0.20, RTTms: 35},
			{Name: "FTTC 100M", DownMbps: 100, UpMbps: 20, Weight: 0.30, RTTms: 16},
			{Name: "FTTC 200M", DownMbps: 200, UpMbps: 20, Weight: 0.25, RTTms: 15},
			{Name: "FTTH 1G", DownMbps: 1000, UpMbps: 300, Weight: 0.25, RTTms: 7},
		},
	},
	{
		Name: "Vodafone Italia", ASN: 30722, Country: "IT", TZ: "Europe/Rome", RushHour: 0.7, Agents: 0.08,
		Plans: []Plan{
			{Name: "ADSL 7M", DownMbps: 7, UpMbps: 0.384, Weight: 0.15, RTTms: 45},
			{Name: "ADSL 20M", DownMbps: 20, UpMbps: 1, Weight: 0.20, RTTms: 38},
			{Name: "FTTC 100M", DownMbps: 100, UpMbps: 20, Weight: 0.30, RTTms: 18},
			{Name: "FTTC 200M", DownMbps: 200, UpMbps: 20, Weight: 0.20, RTTms: 17},
			{Name: "FTTH 1G", DownMbps: 1000, UpMbps: 200, Weight: 0.15, RTTms: 8},
		},
	},
	{
		Name: "WIND TRE", ASN: 1267, Country: "IT", TZ: "Europe/Rome", RushHour: 0.65, Agents: 0.08,
		Plans: []Plan{
			{Name: "ADSL 7M", DownMbps: 7, UpMbps: 0.384, Weight: 0.20, RTTms: 48},
			{Name: "ADSL 20M", DownMbps: 20, UpMbps: 1, Weight: 0.25, RTTms: 40},
			{Name: "FTTC 100M", DownMbps: 100, UpMbps: 20, Weight: 0.30, RTTms: 19},
			{Name: "FTTH 1G", DownMbps: 1000, UpMbps: 300, Weight: 0.25, RTTms: 9},
		},
	},
	{
		Name: "Deutsche Telekom", ASN: 3320, Country: "DE", TZ: "Europe/Berlin", RushHour: 0.85, Agents: 0.14,
		Plans: []Plan{
			{Name: "ADSL 16M", DownMbps: 16, UpMbps: 1, Weight: 0.15, RTTms: 35},
			{Name: "VDSL 50M", DownMbps: 50, UpMbps: 10, Weight: 0.30, RTTms: 20},
			{Name: "VDSL 100M", DownMbps: 100, UpMbps: 40, Weight: 0.30, RTTms: 17},
			{Name: "VDSL 250M", DownMbps: 250, UpMbps: 40, Weight: 0.15, RTTms: 15},
			{Name: "FTTH 1G", DownMbps: 1000, UpMbps: 200, Weight: 0.10, RTTms: 8},
		},
	},
	{
		Name: "Orange", ASN: 3215, Country: "FR", TZ: "Europe/Paris", RushHour: 0.8, Agents: 0.10,
		Plans: []Plan{
			{Name: "ADSL 8M", DownMbps: 8, UpMbps: 0.8, Weight: 0.15, RTTms: 40},
			{Name: "ADSL 20M", DownMbps: 20, UpMbps: 1, Weight: 0.10, RTTms: 35},
			{Name: "FTTH 300M", DownMbps: 300, UpMbps: 300, Weight: 0.40, RTTms: 10},
			{Name: "FTTH 1G", DownMbps: 1000, UpMbps: 700, Weight: 0.35, RTTms: 8},
		},
	},
	{
		Name: "Free", ASN: 12322, Country: "FR", TZ: "Europe/Paris", RushHour: 0.6, Agents: 0.08,
		Plans: []Plan{
			{Name: "ADSL 8M", DownMbps: 8, UpMbps: 0.8, Weight: 0.12, RTTms: 42},
			{Name: "VDSL 50M", DownMbps: 50, UpMbps: 8, Weight: 0.13, RTTms: 22},
			{Name: "FTTH 500M", DownMbps: 500, UpMbps: 200, Weight: 0.25, RTTms: 10},
			{Name: "FTTH 1G", DownMbps: 1000, UpMbps: 600, Weight: 0.50, RTTms: 8},
		},
	},
	{
		Name: "BT", ASN: 2856, Country: "GB", TZ: "Europe/London", RushHour: 0.75, Agents: 0.08,
		Plans: []Plan{
			{Name: "ADSL 8M", DownMbps: 8, UpMbps: 0.448, Weight: 0.10, RTTms: 38},
			{Name: "ADSL2+ 17M", DownMbps: 17, UpMbps: 1, Weight: 0.15, RTTms: 32},
			{Name: "FTTC 40M", DownMbps: 40, UpMbps: 10, Weight: 0.25, RTTms: 20},
			{Name: "FTTC 80M", DownMbps: 80, UpMbps: 20, Weight: 0.30, RTTms: 18},
			{Name: "FTTP 500M", DownMbps: 500, UpMbps: 73, Weight: 0.20, RTTms: 10},
		},
	},
	{
		Name: "Comcast", ASN: 7922, Country: "US", TZ: "America/New_York", RushHour: 0.8, Agents: 0.14,
		Plans: []Plan{
			{Name: "DOCSIS 75M", DownMbps: 75, UpMbps: 5, Weight: 0.15, RTTms: 25},
			{Name: "DOCSIS 300M", DownMbps: 300, UpMbps: 10, Weight: 0.35, RTTms: 22},
			{Name: "DOCSIS 600M", DownMbps: 600, UpMbps: 20, Weight: 0.30, RTTms: 20},
			{Name: "DOCSIS 1G", DownMbps: 1000, UpMbps: 35, Weight: 0.20, RTTms: 18},
		},
	},
}
