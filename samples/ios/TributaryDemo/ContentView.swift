import SwiftUI
import Tributary

/// Two buttons: track an event, identify a user. Lifecycle events are tracked by the package.
struct ContentView: View {
    @EnvironmentObject var analytics: Analytics

    var body: some View {
        VStack(spacing: 16) {
            Button("Track button_click") {
                try? analytics.tributary?.track("button_click", properties: ["button": "demo"])
            }
            Button("Identify user-42") {
                try? analytics.tributary?.identify(userId: "user-42", traits: ["plan": "pro"])
            }
        }
        .onAppear {
            try? analytics.tributary?.screen("Main")
        }
    }
}
